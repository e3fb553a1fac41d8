"""torch's CPU thread count against the static step time, alone and beside a second busy process.

    python benchmarks/thread_count.py            # threads 1 and 2 (and `auto`), idle and busy, 3 repeats

Each measurement is a fresh process (`--worker`) that builds the experiment=synthetic static
stage, takes 5 warm-up steps and times `--steps` more (median step). "busy" starts a second
worker first, training with torch's default thread count (every logical CPU) as an unconfigured
job beside it would, and stops it afterwards. Settings are interleaved across repeats, so a
noisy moment hits them alike; the table gives the median over repeats.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WARMUP = 5


def worker(threads: str, steps: int) -> None:
    """Print the median static step time (s) with `threads` torch threads (`default`: torch's own)."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests"))
    import torch
    from conftest import compose_config
    from timing import step_times

    from dynapose4d.pipeline import run
    from dynapose4d.run import Run
    from dynapose4d.stages.static import StaticStage
    from dynapose4d.threads import set_threads

    with tempfile.TemporaryDirectory() as directory:
        base = ["experiment=synthetic", f"static.iterations={WARMUP + steps}", f"run_dir={directory}/run",
                "log.tensorboard=false", "log.images_every=0"]  # fmt: skip
        run(compose_config([*base, "stages=[]"]))  # the inputs only
        if threads != "default":
            set_threads(threads if threads == "auto" else int(threads))
        stage = StaticStage.from_run(Run(compose_config(base), Path(directory) / "run", torch.device("cpu")))
        times = step_times(stage.train_step, steps, WARMUP)
    print(json.dumps({"threads": torch.get_num_threads(), "step": statistics.median(times)}), flush=True)


def measure(threads: str, busy: bool, steps: int) -> dict:
    """One worker's result, with a competing worker running beside it when `busy`."""
    command = [sys.executable, __file__, "--worker"]
    competitor = None
    if busy:
        competitor = subprocess.Popen([*command, "--threads", "default", "--steps", "100000"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(8)  # past its start-up: it is training when the measurement begins
    try:
        result = subprocess.run([*command, "--threads", threads, "--steps", str(steps)], check=True,
                                capture_output=True, text=True)  # fmt: skip
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", default="auto")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--settings", nargs="+", default=["1", "2", "auto"])
    args = parser.parse_args()
    if args.worker:
        worker(args.threads, args.steps)
        return
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs")
    results: dict[tuple[str, bool], list[dict]] = {}
    for _ in range(args.repeats):
        for busy in (False, True):
            for threads in args.settings:
                results.setdefault((threads, busy), []).append(measure(threads, busy, args.steps))
    print(f"| threads | torch threads | static step, idle (median of {args.repeats}) | beside a busy process |")
    print("|---|---|---|---|")
    for threads in args.settings:
        idle, busy = results[(threads, False)], results[(threads, True)]
        print(f"| {threads} | {idle[0]['threads']} | {statistics.median(r['step'] for r in idle):.3f} s | "
              f"{statistics.median(r['step'] for r in busy):.3f} s |")  # fmt: skip


if __name__ == "__main__":
    main()
