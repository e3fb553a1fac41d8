"""The ablation's results file and its summaries: pure functions on result records, so they are tested
on hand-made numbers and re-run on any results.jsonl (`pal_ablation.py --summarise-only`).

A record is one finished run: {"sample", "kind", "seed", "network", "variant", the dynamic section of its
metrics.json ("heldout_psnr", "heldout_psnr_object", ..., "per_frame", "frames"), "static_heldout_psnr",
"static_heldout_psnr_object", "seconds"}. Runs of one network are paired by (sample, seed) for the Δ vs the
baseline variant (Ref unless told), so every variant is compared with the baseline trained from the same static
model and driving video.
"""

import json
import statistics
import warnings
from collections.abc import Iterable
from pathlib import Path

REFERENCE_VARIANT = "Ref"  # the default baseline of the Δ column
MISSING = "–"  # a column with nothing to average
Key = tuple[str, int, str, str]  # (sample, seed, network, variant): one run

COLUMNS = [
    "network", "variant", "held-out PSNR (dB)", "object-box PSNR (dB)", "Δ vs {baseline} (dB)",
    "reference PSNR (dB)", "held-out SSIM", "held-out LPIPS", "3D keypoint error", "static ceiling (dB)",
    "gap to ceiling (dB)", "runs",
]  # fmt: skip


def read_results(path: Path) -> list[dict]:
    """The records of a results.jsonl; [] when it does not exist yet.

    A run killed while appending leaves a partial line; it is skipped with a warning rather than
    failing the whole ablation, and that run is simply redone (it has no record).
    """
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            warnings.warn(f"{path}:{number} is not a whole JSON line (an interrupted write?): ignored", stacklevel=2)
    return records


def append_result(path: Path, record: dict) -> None:
    """Add one record as a line of its own, in one write; earlier lines are never rewritten.

    After an interrupted write the file ends mid-line: a newline first keeps that fragment on a line
    of its own (which read_results skips) instead of corrupting this record.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab+") as file:
        file.seek(0, 2)
        partial = file.tell() > 0 and _last_byte(file) != b"\n"
        file.write((("\n" if partial else "") + json.dumps(record) + "\n").encode())


def _last_byte(file) -> bytes:
    file.seek(-1, 2)
    return file.read(1)


def result_key(record: dict) -> Key:
    return record["sample"], record["seed"], record["network"], record["variant"]


def done_keys(records: Iterable[dict]) -> set[Key]:
    """The runs that have a record: resuming skips them."""
    return {result_key(record) for record in records}


def summary_rows(records: list[dict], by: str | None = None, baseline: str = REFERENCE_VARIANT) -> list[dict]:
    """One row per (group, network, variant): pooled over everything when `by` is None, else per value of
    record[by] ("kind" or "sample"). Rows follow the order runs first appear in, `baseline` first."""
    rows = []
    for group, members in _groups(records, by).items():
        for network in _ordered(record["network"] for record in members):
            runs = [record for record in members if record["network"] == network]
            reference = {_job(run): run for run in runs if run["variant"] == baseline}
            for variant in _variants(runs, baseline):
                chosen = [record for record in runs if record["variant"] == variant]
                rows.append({"group": group, "network": network, "variant": variant, **_statistics(chosen, reference)})
    return rows


def _groups(records: list[dict], by: str | None) -> dict[str, list[dict]]:
    if by is None:
        return {"all": records}
    return {value: [r for r in records if r[by] == value] for value in _ordered(r[by] for r in records)}


def _variants(runs: list[dict], baseline: str = REFERENCE_VARIANT) -> list[str]:
    order = _ordered(record["variant"] for record in runs)
    return sorted(order, key=lambda variant: variant != baseline)  # stable: the baseline, then first seen


def _ordered(values: Iterable) -> list:
    return list(dict.fromkeys(values))


def _statistics(runs: list[dict], reference: dict[tuple[str, int], dict]) -> dict:
    """The numbers of one table row. The Δ uses only the runs whose baseline run (same sample and seed)
    exists: None when there is none, so a missing baseline never reads as a zero difference."""
    heldout = [run["heldout_psnr"] for run in runs]
    ceiling = [run["static_heldout_psnr"] for run in runs]
    delta = [run["heldout_psnr"] - reference[_job(run)]["heldout_psnr"] for run in runs if _job(run) in reference]
    lpips = [run["heldout_lpips"] for run in runs if _is_number(run.get("heldout_lpips"))]  # strings: skipped
    motion = [run["keypoint_error_3d"] for run in runs if "keypoint_error_3d" in run]  # samples with 3D keypoints
    return {
        "heldout_psnr": _mean_std(heldout),
        "heldout_psnr_object": _mean_std([run["heldout_psnr_object"] for run in runs]),
        "delta": _mean_std(delta) if delta else None,
        "delta_pairs": len(delta),
        "reference_psnr": statistics.mean(run["reference_psnr"] for run in runs),
        "heldout_ssim": statistics.mean(run["heldout_ssim"] for run in runs),
        "heldout_lpips": statistics.mean(lpips) if lpips else None,
        "keypoint_error_3d": statistics.mean(motion) if len(motion) == len(runs) else None,  # all runs, or none
        "static_heldout_psnr": statistics.mean(ceiling),
        "gap_to_ceiling": statistics.mean(static - dynamic for static, dynamic in zip(ceiling, heldout)),
        "runs": len(runs),
    }


def _job(run: dict) -> tuple[str, int]:
    """(sample, seed): what a variant's run shares with its Ref run."""
    return run["sample"], run["seed"]


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single run)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def format_table(rows: list[dict], group_label: str | None = None, baseline: str = REFERENCE_VARIANT) -> str:
    """A markdown table of summary_rows; `group_label` adds a first column naming each row's group."""
    header = ([group_label] if group_label else []) + [column.format(baseline=baseline) for column in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = ([row["group"]] if group_label else []) + _cells(row)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cells(row: dict) -> list[str]:
    return [
        row["network"],
        row["variant"],
        _plus_minus(row["heldout_psnr"]),
        _plus_minus(row["heldout_psnr_object"]),
        _delta(row),
        f"{row['reference_psnr']:.2f}",
        f"{row['heldout_ssim']:.4f}",
        MISSING if row["heldout_lpips"] is None else f"{row['heldout_lpips']:.4f}",
        MISSING if row["keypoint_error_3d"] is None else f"{row['keypoint_error_3d']:.4f}",
        f"{row['static_heldout_psnr']:.2f}",
        f"{row['gap_to_ceiling']:.2f}",
        str(row["runs"]),
    ]


def _plus_minus(mean_std: tuple[float, float], sign: str = "") -> str:
    mean, std = mean_std
    return f"{mean:{sign}.2f} ± {std:.2f}"


def _delta(row: dict) -> str:
    """Δ vs the baseline, saying how many runs it covers when some had no baseline run to pair with."""
    if row["delta"] is None:
        return MISSING
    text = _plus_minus(row["delta"], sign="+")
    return text if row["delta_pairs"] == row["runs"] else f"{text} ({row['delta_pairs']} paired)"


def summary_markdown(records: list[dict], baseline: str = REFERENCE_VARIANT) -> str:
    """table.md: pooled, then per kind, then per sample."""
    return "\n".join([
        "## Pooled over samples and seeds", "", format_table(summary_rows(records, None, baseline), None, baseline),
        "", "## Per kind", "", format_table(summary_rows(records, "kind", baseline), "kind", baseline),
        "", "## Per sample", "", format_table(summary_rows(records, "sample", baseline), "sample", baseline), "",
    ])  # fmt: skip


def mean_curve(runs: list[dict]) -> tuple[list[int], list[float]]:
    """Held-out PSNR per frame, averaged over runs at each frame index (samples may differ in frame count)."""
    by_frame: dict[int, list[float]] = {}
    for run in runs:
        for frame, value in zip(run["frames"], run["per_frame"]["heldout_psnr"]):
            by_frame.setdefault(frame, []).append(value)
    frames = sorted(by_frame)
    return frames, [statistics.mean(by_frame[frame]) for frame in frames]


def plot_psnr_over_frames(records: list[dict], path: Path, baseline: str = REFERENCE_VARIANT) -> None:
    """One subplot per network, one curve per variant: where in the motion each variant gains or loses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    networks = _ordered(record["network"] for record in records)
    figure, axes = plt.subplots(1, len(networks), figsize=(6 * len(networks), 4), squeeze=False)
    for axis, network in zip(axes[0], networks):
        runs = [record for record in records if record["network"] == network]
        for variant in _variants(runs, baseline):
            frames, psnr = mean_curve([run for run in runs if run["variant"] == variant])
            axis.plot(frames, psnr, marker="o", markersize=3, label=variant)
        axis.set(title=f"{network}: held-out PSNR per frame (mean over runs)", xlabel="frame", ylabel="PSNR (dB)")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_summary(records: list[dict], out: Path, baseline: str = REFERENCE_VARIANT) -> str:
    """Write <out>/table.md and <out>/psnr_over_frames.png; return the table's text."""
    table = summary_markdown(records, baseline)
    (out / "table.md").write_text(table)
    plot_psnr_over_frames(records, out / "psnr_over_frames.png", baseline)
    return table
