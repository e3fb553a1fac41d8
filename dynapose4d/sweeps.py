"""`-m` sweeps: each job's run directory, failures recorded there, and one table over all the jobs."""

import csv
import json
import re
import traceback
from pathlib import Path

import yaml

from .checkpoint import is_done
from .errors import DynaPoseError
from .run_dir import CONFIG_DIR

FAILED = "FAILED"  # marker a failed job leaves in its run directory: the reason and the job's overrides
MULTIRUN_CONFIG = "multirun.yaml"  # Hydra saves the sweep's own config here before any job starts
OVERRIDES_FILE = "config.overrides.yaml"  # the job's overrides, saved by record_config
DEFAULT_METRICS = ["dynamic.heldout_psnr", "dynamic.heldout_ssim", "dynamic.reference_psnr", "static.heldout_psnr"]
MAX_LABEL = 120  # keeps a job directory's name well under the usual 255-byte limit


def split_override(override: str) -> tuple[str, str]:
    """`+a.b=1` -> ("a.b", "1")."""
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def swept_keys(sweep_dir: Path) -> list[str] | None:
    """The keys the sweep varies (sweep config and command line), or None when there is no multirun.yaml."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    path = Path(sweep_dir) / MULTIRUN_CONFIG
    if not path.exists():
        return None
    hydra_cfg = read_yaml(path)["hydra"]
    params = hydra_cfg["sweeper"].get("params") or {}
    declared = [f"{key}={value}" for key, value in params.items()] + hydra_cfg["overrides"]["task"]
    parsed = OverridesParser.create().parse_overrides(declared)
    keys = [override.key_or_group for override in parsed if override.is_sweep_override()]
    return list(dict.fromkeys(keys))  # the command line may repeat a sweep config's key


def job_run_dir(sweep_dir: Path, job_num: int, overrides: list[str]) -> Path:
    """<sweep dir>/<job number>_<swept key=value,...>: unique per job and readable in a file browser."""
    values = dict(split_override(override) for override in overrides)
    label = ",".join(f"{key}={values[key]}" for key in swept_keys(sweep_dir) or [] if key in values)
    label = re.sub(r"[^\w.=,+-]", "_", label)[:MAX_LABEL]
    return Path(sweep_dir) / (f"{job_num}_{label}" if label else str(job_num))


def record_failure(run_dir: Path, error: BaseException, overrides: list[str]) -> None:
    """Write FAILED into the job's run directory, so the summary can list the job and why it failed."""
    record = {"reason": failure_reason(error), "overrides": overrides}
    if not isinstance(error, DynaPoseError):
        record["traceback"] = "".join(traceback.format_exception(error))  # a bug: a cluster job's log is far away
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / FAILED).write_text(yaml.safe_dump(record, sort_keys=False))


def clear_failure(run_dir: Path) -> None:
    """Forget an earlier attempt's failure, so a rerun with resume=true starts clean."""
    (run_dir / FAILED).unlink(missing_ok=True)


def failure_reason(error: BaseException) -> str:
    return str(error) if isinstance(error, DynaPoseError) else f"{type(error).__name__}: {error}"


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The run directories of a sweep's jobs (or of any runs side by side), in job-number order."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise DynaPoseError(f"{sweep_dir} is not a directory; pass a sweep's directory, e.g. outputs/multirun/<time>")
    found = [path for path in sweep_dir.iterdir() if (path / FAILED).exists() or (path / CONFIG_DIR).is_dir()]
    if not found:
        raise DynaPoseError(f"no jobs in {sweep_dir}: none of its folders holds a run (.hydra/) or a {FAILED} marker")
    return sorted(found, key=lambda path: (job_number(path) is None, job_number(path) or 0, path.name))


def job_number(run_dir: Path) -> int | None:
    match = re.match(r"(\d+)_", run_dir.name + "_")
    return int(match.group(1)) if match else None


def read_job(run_dir: Path, metrics: list[str]) -> dict:
    """One row: job, status (done | failed | incomplete), its overrides, the chosen metrics, the failure reason."""
    failure = read_yaml(run_dir / FAILED)
    overrides = failure["overrides"] if failure else read_yaml(run_dir / CONFIG_DIR / OVERRIDES_FILE) or []
    stages = (read_yaml(run_dir / CONFIG_DIR / "config.yaml") or {}).get("stages")
    if failure:
        status = "failed"
    elif stages is not None and all(is_done(run_dir / stage) for stage in stages):
        status = "done"
    else:
        status = "incomplete"  # still running, or killed (a cluster time limit, Ctrl-C)
    number = job_number(run_dir)
    return {
        "job": run_dir.name if number is None else number,
        "status": status,
        "overrides": dict(split_override(override) for override in overrides),
        "metrics": read_metrics(run_dir, metrics),
        "reason": failure["reason"] if failure else "",
    }


def read_yaml(path: Path):
    """The file's data, or None when it is missing; plain YAML, so a `${...}` in a message stays text."""
    return yaml.safe_load(path.read_text()) if path.exists() else None


def read_metrics(run_dir: Path, names: list[str]) -> dict:
    """`section.key` -> number, for the names metrics.json has as numbers (real images have none)."""
    path = run_dir / "metrics.json"
    tree = json.loads(path.read_text()) if path.exists() else {}
    found = {}
    for name in names:
        value = tree
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            found[name] = float(value)
    return found


def varying_keys(jobs: list[dict]) -> list[str]:
    """Without a multirun.yaml: the override keys whose values differ between jobs."""
    keys = dict.fromkeys(key for job in jobs for key in job["overrides"])
    return [key for key in keys if len({job["overrides"].get(key) for job in jobs}) > 1]


def summarize(sweep_dir: Path, metrics: list[str] | None = None) -> list[Path]:
    """Write summary.csv, summary.md and summary.png into `sweep_dir`; return their paths."""
    metrics = metrics or DEFAULT_METRICS
    jobs = [read_job(path, metrics) for path in job_dirs(sweep_dir)]
    keys = swept_keys(sweep_dir)
    keys = varying_keys(jobs) if keys is None else keys
    header = ["job", "status", *keys, *metrics]
    rows = [[job["job"], job["status"], *(job["overrides"].get(key, "") for key in keys),
             *(job["metrics"].get(name, "") for name in metrics)] for job in jobs]  # fmt: skip
    sweep_dir = Path(sweep_dir)
    paths = [sweep_dir / "summary.csv", sweep_dir / "summary.md", sweep_dir / "summary.png"]
    with open(paths[0], "w", newline="") as file:
        csv.writer(file).writerows([header + ["reason"]] + [row + [job["reason"]] for row, job in zip(rows, jobs)])
    paths[1].write_text(markdown(header, rows, jobs))
    plot(jobs, keys, metrics[0], paths[2])
    return paths


def markdown(header: list[str], rows: list[list], jobs: list[dict]) -> str:
    """A table (one row per job) and, under it, each failed job with its reason."""

    def cell(value) -> str:
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    failed = [job for job in jobs if job["status"] == "failed"]
    if failed:
        lines += ["", "Failed jobs:", ""] + [f"- job {job['job']}: {cell(job['reason'])}" for job in failed]
    return "\n".join(lines) + "\n"


def plot(jobs: list[dict], keys: list[str], metric: str, path: Path) -> None:
    """`metric` per job as points on a zoomed axis (sweeps often differ by tenths of a dB); no number: the status."""
    import matplotlib

    matplotlib.use("Agg")  # files only: works on a headless cluster node
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(max(4.0, 1.8 * len(jobs)), 4.0))
    for position, job in enumerate(jobs):
        value = job["metrics"].get(metric)
        if value is None:
            axes.annotate(
                job["status"], (position, 0.05), xycoords=axes.get_xaxis_transform(), ha="center", color="red"
            )
        else:
            axes.plot(position, value, "o", color="tab:blue")
            axes.annotate(f"{value:.2f}", (position, value), xytext=(0, 6), textcoords="offset points", ha="center")
    labels = [
        "\n".join([f"job {job['job']}"] + [f"{key.split('.', 1)[-1]}={job['overrides'].get(key, '')}" for key in keys])
        for job in jobs
    ]
    axes.set_xticks(range(len(jobs)), labels, fontsize=7)
    axes.set_xlim(-0.5, len(jobs) - 0.5)
    axes.margins(y=0.2)  # room for the labels above the points
    axes.set_ylabel(metric)
    axes.set_title(f"{metric} per job")
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
