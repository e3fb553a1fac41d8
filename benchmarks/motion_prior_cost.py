"""What each motion prior adds to a dynamic step: `python benchmarks/motion_prior_cost.py --base RUN_DIR`.

RUN_DIR is any run whose static, video and keypoints stages finished with ground truth, e.g. a
base of the ablation (`outputs/pal_ablation/base/quadruped-0-s0`). For each setting the dynamic
stage is built on a copy of it (its experiment's settings, Ref+PAL) and `--steps` training steps are timed
after 3 warm-up steps; settings are interleaved over `--repeats` rounds and the table gives the
median step and its ratio to Ref+PAL alone. The graphs are built in the constructor: not timed.
"""

import argparse
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from timing import ratio_table, step_times  # noqa: E402

from dynapose4d.run import Run  # noqa: E402
from dynapose4d.stages.dynamic import DynamicStage  # noqa: E402
from dynapose4d.stages.terms import DYNAMIC_TERMS, motion  # noqa: E402

PRIORS = [entry.name for entry in DYNAMIC_TERMS if entry.component.__module__ == motion.__name__]  # terms/motion.py's
WARMUP = 3


def settings(network: str) -> dict[str, list[str]]:
    """Ref+PAL alone, with each prior the network takes, and with all of them."""
    priors = [name for name in PRIORS if network == "hexplane" or name not in motion.PLANE_PRIORS]
    each = {f"+{name}": [f"dynamic.loss.{name}=1"] for name in priors}
    return {"Ref+PAL": [], **each, "+all": [f"dynamic.loss.{name}=1" for name in priors]}


def dynamic_step_times(base: Path, overrides: list[str], steps: int) -> list[float]:
    """Seconds of each timed training step of a dynamic stage on `base` with `overrides`."""
    recorded = OmegaConf.load(base / ".hydra" / "config.yaml")
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["log.tensorboard=false", *overrides])
    measured = {key: cfg.dynamic[key] for key in ("loss", "deformation")}  # what this setting changes
    for key in ("synthetic", "sample", "image_size", "elevation", "static", "video", "keypoints", "dynamic"):
        cfg[key] = recorded[key]  # the base's own data and stage settings
    cfg.dynamic.update(measured)
    cfg.dynamic.iterations = WARMUP + steps  # the schedules' length
    stage = DynamicStage.from_run(Run(cfg, base, torch.device("cpu")))
    return step_times(stage.train_step, steps, WARMUP)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--network", default="hexplane", choices=["hexplane", "sparse_control"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}")
    work = Path(tempfile.mkdtemp()) / "run"  # a copy: building a stage writes into its run directory
    shutil.copytree(args.base, work, ignore=shutil.ignore_patterns("dynamic", "superseded", "tb"))
    times: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for name, overrides in settings(args.network).items():
            overrides = [f"dynamic/deformation={args.network}", *overrides]
            times.setdefault(name, []).extend(dynamic_step_times(work, overrides, args.steps))
    print(ratio_table(times, "Ref+PAL", args.network, f"dynamic step (median of {args.repeats} x {args.steps})"))


if __name__ == "__main__":
    main()
