"""What watching a training stage costs: its loop with TensorBoard logging and the live viewer off and on.

Settings, each timed `--repeats` times (median), the same run and seed each time:
  off        log.tensorboard=false, log.images_every=0   (losses.csv only)
  scalars    log.tensorboard=true,  log.images_every=0
  default    log.tensorboard=true,  log.images_every=50  (the shipped setting)
  images_10  log.tensorboard=true,  log.images_every=10  (a heavy setting)
  viewer     default + viewer=true viewer_every=50 (the live web viewer, no browser connected)
Only the loop is timed (`fit` without writing the outputs): the experiment=synthetic static
stage, `--iterations` steps. Run with `OMP_NUM_THREADS=1 python benchmarks/monitoring_overhead.py`.
"""

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import compose_config  # noqa: E402

from dynapose4d.pipeline import run  # noqa: E402
from dynapose4d.run import Run  # noqa: E402
from dynapose4d.stages.static import StaticStage  # noqa: E402

SETTINGS = {
    "off": ["log.tensorboard=false", "log.images_every=0"],
    "scalars": ["log.tensorboard=true", "log.images_every=0"],
    "default": ["log.tensorboard=true", "log.images_every=50"],
    "images_10": ["log.tensorboard=true", "log.images_every=10"],
    "viewer": ["log.tensorboard=true", "log.images_every=50", "viewer=true", "viewer_port=0", "viewer_every=50"],
}


def time_loop(root: Path, iterations: int, name: str, attempt: int) -> float:
    settings = SETTINGS[name]
    run_dir = root / f"{name}_{attempt}"
    base = ["experiment=synthetic", f"static.iterations={iterations}", f"run_dir={run_dir}"]
    run(compose_config([*base, "stages=[]"]))  # the inputs only
    stage = StaticStage.from_run(Run(compose_config([*base, *settings]), run_dir, torch.device("cpu")))
    stage.write_outputs = lambda: None  # the same for every setting: not what is measured
    start = time.perf_counter()
    stage.fit()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as directory:
        medians = {}
        for attempt in range(args.repeats):  # settings interleaved, so a busy moment hits them alike
            for name in SETTINGS:
                medians.setdefault(name, []).append(time_loop(Path(directory), args.iterations, name, attempt))
    off = statistics.median(medians["off"])
    print(f"| setting | loop time, {args.iterations} steps (median of {args.repeats}) | vs off |")
    print("|---|---|---|")
    for name, times in medians.items():
        median = statistics.median(times)
        print(f"| {name} | {median:.2f} s | {100 * (median / off - 1):+.1f}% |")


if __name__ == "__main__":
    main()
