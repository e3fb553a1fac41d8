"""Dynamic-stage ablation over ground-truth samples: Ref, Ref+SCL, Ref+KML, Ref+PAL and variants of your own.

Every variant is trained with each deformation network.

A job is a (sample, training seed). Its static, video and keypoints stages run once into
<out>/base/<sample>-s<seed>; every (network, variant) pair then trains the dynamic stage in a copy of that
directory (<out>/runs/<sample>-s<seed>/<network>/<variant>), so all variants start from the same static
model and driving video, and are scored against the sample's ground truth (metrics.json).

    # synthetic subjects: one sample per (kind, seed) written to <out>/samples/<kind>-<seed>, trained with that seed
    python benchmarks/pal_ablation.py --kinds quadruped biped --seeds 0 1 2
    # your own samples (data/sample.py describes the layout), two training seeds each, one network
    python benchmarks/pal_ablation.py --samples data/robot data/cat --seeds 0 1 --networks hexplane
    # a variant of your own beside Ref and Ref+PAL: NAME=OVERRIDE[;OVERRIDE...]
    python benchmarks/pal_ablation.py --kinds biped --define "PAL-x10=dynamic.loss.kml=1e5;dynamic.loss.scl=1e5" \\
        --variants Ref Ref+PAL PAL-x10
    # the tables and plot again from <out>/results.jsonl, nothing trained
    python benchmarks/pal_ablation.py --summarise-only

Each finished run appends one line to <out>/results.jsonl (never rewritten); table.md and
psnr_over_frames.png then summarise every line there (ablation_summary.py). Rerunning a command
resumes it: runs with a line are skipped, a run directory an interrupted run left is continued,
unless its base has been redone since it was copied.
"""

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ablation_summary import append_result, done_keys, read_results, write_summary

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # dynapose4d from this checkout, imported when a run starts

CONFIG_DIR = ROOT / "configs"
NETWORKS = sorted(path.stem for path in (CONFIG_DIR / "dynamic" / "deformation").glob("*.yaml"))
RESULTS = "results.jsonl"
BASE_STAGES = "stages=[static,video,keypoints]"
RUN_STAGES = "stages=[static,video,keypoints,dynamic]"
BASE_ID = "ablation-base-id"  # in a run directory: the base it was copied from (see base_id)


@dataclass(frozen=True)
class Sample:
    directory: Path  # absolute
    name: str  # names the job's directories and its results lines
    kind: str  # groups samples in the per-kind table


@dataclass(frozen=True)
class Job:
    sample: Sample
    seed: int  # training seed

    @property
    def name(self) -> str:
        return f"{self.sample.name}-s{self.seed}"

    def overrides(self) -> list[str]:
        """What every run of this job trains on."""
        return ["experiment=ground_truth", f"sample={_quoted(self.sample.directory)}", f"seed={self.seed}"]


def _quoted(path: Path) -> str:
    """A path as one Hydra override value, whatever characters it has (spaces, commas, '=')."""
    return "'" + str(path).replace("'", "\\'") + "'"


def read_sample(directory: Path) -> Sample:
    """A sample's labels (data/sample.py's sample_labels: sample.json's, else its folder's name)."""
    from dynapose4d.data.sample import SampleError, sample_labels

    try:
        labels = sample_labels(directory)
    except SampleError as error:
        raise ValueError(str(error)) from None
    return Sample(directory.resolve(), labels["name"], labels["kind"])


def sample_jobs(directories: list[Path], seeds: list[int]) -> list[Job]:
    return [Job(read_sample(directory), seed) for directory in directories for seed in seeds]


def synthetic_jobs(kinds: list[str], seeds: list[int], out: Path, frames: int, resolution: int) -> list[Job]:
    """One synthetic sample per (kind, seed), trained with that seed. A sample already written (its
    sample.json is written last) is reused as it is, so --frames and --resolution only shape new ones."""
    from dynapose4d.data.synthetic import write_synthetic_sample

    jobs = []
    for kind in kinds:
        for seed in seeds:
            directory = out / "samples" / f"{kind}-{seed}"
            if not (directory / "sample.json").exists():
                write_synthetic_sample(directory, kind, seed, num_frames=frames, resolution=resolution)
            jobs.append(Job(read_sample(directory), seed))
    return jobs


def check_unique_names(jobs: list[Job]) -> None:
    """Two different samples with one name would train into, and be recorded as, the same runs."""
    directories: dict[str, Path] = {}
    for job in jobs:
        first = directories.setdefault(job.sample.name, job.sample.directory)
        if first != job.sample.directory:
            raise ValueError(f"{first} and {job.sample.directory} are both named {job.sample.name!r} in sample.json")


def builtin_variants(kml_weight: float, scl_weight: float | None) -> dict[str, list[str]]:
    """The PAL ablation: the reference-view loss alone, with each PAL term, and with both (an SCL weight of
    None: each field's own, its scl_weight)."""
    kml_off, scl_off = "dynamic.loss.kml=0", "dynamic.loss.scl=0"
    scl = "null" if scl_weight is None else scl_weight
    kml_on, scl_on = f"dynamic.loss.kml={kml_weight}", f"dynamic.loss.scl={scl}"
    return {"Ref": [kml_off, scl_off], "Ref+SCL": [kml_off, scl_on], "Ref+KML": [kml_on, scl_off],
            "Ref+PAL": [kml_on, scl_on]}  # fmt: skip


def parse_definition(text: str) -> tuple[str, list[str]]:
    """--define NAME=OVERRIDE[;OVERRIDE...] -> (NAME, [OVERRIDE, ...]); NAME becomes a directory name."""
    name, separator, overrides = text.partition("=")
    variant = [override.strip() for override in overrides.split(";") if override.strip()]
    if not separator or not name or "/" in name or name in {".", ".."} or not variant:
        raise argparse.ArgumentTypeError(f"expected NAME=OVERRIDE[;OVERRIDE...] with a file-name-safe NAME: {text!r}")
    return name, variant


def select_variants(variants: dict[str, list[str]], names: list[str] | None) -> dict[str, list[str]]:
    """The variants to run, in the order asked for; all of them when `names` is None."""
    if names is None:
        return variants
    unknown = [name for name in names if name not in variants]
    if unknown:
        raise ValueError(f"unknown variants {unknown}: the built-in ones and --define give {list(variants)}")
    return {name: variants[name] for name in names}


def compose_config(overrides: list[str]):
    """The training config scripts/train.py would run with these overrides."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def default_loss_weights(job: Job, extra: list[str]) -> tuple[float, float | None]:
    """(KML, SCL) weights of the config the runs compose: what Ref+KML, Ref+SCL and Ref+PAL switch on."""
    loss = compose_config([*job.overrides(), *extra]).dynamic.loss
    return loss.kml, loss.scl


def run_overrides(job: Job, run_dir: Path, network: str, variant: list[str], extra: list[str]) -> list[str]:
    return [*job.overrides(), f"run_dir={_quoted(run_dir)}", "resume=true", RUN_STAGES,
            f"dynamic/deformation={network}", *variant, *extra]  # fmt: skip


def check_configs(job: Job, networks: list[str], variants: dict[str, list[str]], extra: list[str]) -> None:
    """Compose every run's config before any training, so a typo in --define or --override fails now
    rather than after the first job's base stages have trained."""
    for network in networks:
        for variant in variants.values():
            compose_config(run_overrides(job, Path("unused"), network, variant, extra))


def train(overrides: list[str]) -> None:
    """One pipeline run (the tests replace it)."""
    from dynapose4d.pipeline import run

    run(compose_config(overrides))


def pending_runs(job: Job, networks: list[str], variants: list[str], done: set) -> list[tuple[str, str]]:
    """The (network, variant) pairs of a job that have no line in results.jsonl yet."""
    return [(network, variant) for network in networks for variant in variants
            if (job.sample.name, job.seed, network, variant) not in done]  # fmt: skip


def prepare_base(job: Job, out: Path, extra: list[str]) -> Path:
    """Static + video + keypoints of a job, shared by all its runs. Resumed every time, so the pipeline
    redoes stages whose outputs broke or whose settings changed; finished ones are skipped."""
    base = out / "base" / job.name
    train([*job.overrides(), f"run_dir={_quoted(base)}", "resume=true", BASE_STAGES, *extra])
    return base


def base_id(base: Path) -> str:
    """Changes whenever the base is redone: its last stage's DONE is then written anew."""
    return str((base / "keypoints" / "DONE").stat().st_mtime_ns)


def ready_run_dir(base: Path, run_dir: Path) -> None:
    """A run directory holding the current base: the one an interrupted run left, continued, or else
    a fresh copy (also when the base was redone after that run started from it)."""
    if run_dir.exists() and _read(run_dir / BASE_ID) != base_id(base):
        shutil.rmtree(run_dir)
    if run_dir.exists():
        return
    partial = run_dir.with_name(run_dir.name + ".partial")  # a copy cut short is never taken for a run
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(base, partial, ignore=shutil.ignore_patterns("superseded"))
    (partial / BASE_ID).write_text(base_id(base))
    partial.rename(run_dir)


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def run_variant(job: Job, network: str, variant: str, overrides: list[str], base: Path, out: Path,
                extra: list[str]) -> dict:  # fmt: skip
    """Train one (network, variant) of a job from its base; its line for results.jsonl."""
    run_dir = out / "runs" / job.name / network / variant
    ready_run_dir(base, run_dir)
    seconds = None  # unknown for a run that finished before its line was written
    if not (run_dir / "dynamic" / "DONE").exists():
        start = time.perf_counter()
        train(run_overrides(job, run_dir, network, overrides, extra))
        seconds = round(time.perf_counter() - start, 1)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return result_record(job, network, variant, overrides, metrics, seconds)


def result_record(job: Job, network: str, variant: str, overrides: list[str], metrics: dict,
                  seconds: float | None) -> dict:  # fmt: skip
    """The dynamic stage's metrics labelled with the run, plus the static ceiling (frame 0 only)."""
    static = metrics["static"]
    return {
        "sample": job.sample.name, "kind": job.sample.kind, "seed": job.seed, "network": network, "variant": variant,
        **metrics["dynamic"],
        "static_heldout_psnr": static["heldout_psnr"], "static_heldout_psnr_object": static["heldout_psnr_object"],
        "seconds": seconds,
        "overrides": overrides,  # what the variant meant when it ran: --define can change a name's meaning
    }  # fmt: skip


def run_ablation(jobs: list[Job], networks: list[str], variants: dict[str, list[str]], out: Path,
                 extra: list[str]) -> None:  # fmt: skip
    """Train every run without a line in results.jsonl, appending each line as soon as its run finishes."""
    results = out / RESULTS
    done = done_keys(read_results(results))
    for job in jobs:
        pending = pending_runs(job, networks, list(variants), done)
        if not pending:
            print(f"{job.name}: every run is in {results} already")
            continue
        base = prepare_base(job, out, extra)
        for network, variant in pending:
            record = run_variant(job, network, variant, variants[variant], base, out, extra)
            append_result(results, record)
            print(f"{job.name} {network} {variant}: held-out PSNR {record['heldout_psnr']:.2f} dB")


def parse_args(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--samples", type=Path, nargs="+", metavar="DIR", help="ground-truth sample directories")
    source.add_argument("--kinds", nargs="+", metavar="KIND", help="synthetic kinds: quadruped, biped, bird, blob")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (and synthetic samples')")
    parser.add_argument("--frames", type=int, default=16, help="frames of a newly generated synthetic sample")
    parser.add_argument("--resolution", type=int, default=128, help="image size of a newly generated synthetic sample")
    parser.add_argument("--networks", nargs="+", choices=NETWORKS, default=["hexplane", "sparse_control"])
    parser.add_argument("--define", type=parse_definition, action="append", default=[], metavar="NAME=OVERRIDES",
                        help="add or replace a variant: NAME=OVERRIDE[;OVERRIDE...] (repeatable)")  # fmt: skip
    parser.add_argument("--variants", nargs="+", help="variants to run (default: the four built-in and every --define)")
    parser.add_argument("--kml-weight", type=float, help="KML weight when on (default: the composed config's)")
    parser.add_argument("--scl-weight", type=float, help="SCL weight when on (default: the composed config's)")
    parser.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides for every run")
    parser.add_argument("--out", type=Path, default=Path("outputs/pal_ablation"))
    parser.add_argument("--summarise-only", action="store_true", help="summarise <out>/results.jsonl, train nothing")
    parser.add_argument("--baseline", default="Ref", help="the variant the Δ column compares with (default: Ref)")
    return parser, parser.parse_args(argv)


def make_jobs(args: argparse.Namespace) -> list[Job]:
    if args.samples:
        jobs = sample_jobs(args.samples, args.seeds)
    else:
        jobs = synthetic_jobs(args.kinds, args.seeds, args.out, args.frames, args.resolution)
    jobs = list(dict.fromkeys(jobs))  # a sample given twice runs once
    check_unique_names(jobs)
    return jobs


def make_variants(args: argparse.Namespace, job: Job) -> dict[str, list[str]]:
    kml_weight, scl_weight = args.kml_weight, args.scl_weight
    if kml_weight is None or scl_weight is None:
        default_kml, default_scl = default_loss_weights(job, args.override)
        kml_weight = default_kml if kml_weight is None else kml_weight
        scl_weight = default_scl if scl_weight is None else scl_weight
    return select_variants({**builtin_variants(kml_weight, scl_weight), **dict(args.define)}, args.variants)


def main(argv: list[str] | None = None) -> None:
    parser, args = parse_args(argv)
    if not args.summarise_only:
        if not (args.samples or args.kinds):
            parser.error("give --samples DIR ... or --kinds KIND ... (or --summarise-only)")
        try:
            jobs = make_jobs(args)
            variants = make_variants(args, jobs[0])
        except ValueError as error:
            parser.error(str(error))
        check_configs(jobs[0], args.networks, variants, args.override)
        run_ablation(jobs, args.networks, variants, args.out, args.override)
    records = read_results(args.out / RESULTS)
    if not records:
        raise SystemExit(f"no results in {args.out / RESULTS} to summarise")
    print(write_summary(records, args.out, args.baseline))


if __name__ == "__main__":
    main()
