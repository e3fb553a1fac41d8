"""`scripts/eval.py`: score renders, or our runs rendered at the evaluation views, on one benchmark.

  consistent4d  renders in the ground-truth layout (`pred_root`), or one run per object under
                `runs_root/<object>/`, against `gt_root/<object>/eval_{v}/{t}.png`;
  animate124    one run per case under `runs_root/<case>/`: CLIP similarity to the input image;
  ground_truth  one run with ground truth (`experiment=ground_truth` or `synthetic`, `run_dir`) against
                its sample's held-out views, at the sample's own cameras.
Writes metrics.json, scores.csv, table.md and scores.png into `output_dir`.
"""

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from ..cameras import orbit_cameras
from ..data.image import WHITE, composite
from ..data.sample import load_sample
from ..errors import DynaPoseError
from ..run import resolve_device
from .fvd import FVDPool
from .layouts import (
    CONSISTENT4D_AZIMUTHS,
    animate124_cases,
    consistent4d_objects,
    load_animate124_image,
    save_view_frames,
)
from .report import write_report
from .runs import latest_finished_run, render_run
from .scoring import score_animate124, score_consistent4d, score_consistent4d_folders, summarize_consistent4d
from .suite import MetricSuite

log = logging.getLogger(__name__)
BENCHMARKS = ("consistent4d", "animate124", "ground_truth")


def evaluate(cfg: DictConfig) -> Path:
    """Score `cfg.benchmark` and write the report; returns its directory."""
    if cfg.benchmark not in BENCHMARKS:
        raise DynaPoseError(f"benchmark must be one of {', '.join(BENCHMARKS)}, got {cfg.benchmark!r}")
    source = cfg.run_dir if cfg.benchmark == "ground_truth" else (cfg.pred_root or cfg.runs_root)
    if source is None:
        raise DynaPoseError(_WHAT_TO_PASS[cfg.benchmark])
    output_dir = Path(cfg.output_dir or Path(source) / f"eval_{cfg.benchmark}")
    device = resolve_device(cfg.device)
    suite = MetricSuite.build(cfg.lpips_net, cfg.clip_model, cfg.fvd_i3d, device, cfg.local_only)
    for metric, reason in suite.skipped.items():
        log.info("eval: %s skipped: %s", metric, reason)
    result = _SCORERS[cfg.benchmark](cfg, suite, output_dir, device)
    write_report(result, output_dir, f"{cfg.benchmark}: {source}")
    return output_dir


def _consistent4d(cfg: DictConfig, suite: MetricSuite, output_dir: Path, device: torch.device) -> dict:
    if cfg.gt_root is None:
        raise DynaPoseError("benchmark=consistent4d needs gt_root=path/to/eval_gt (the benchmark's ground truth)")
    pred_root = cfg.pred_root
    if pred_root is None:  # render each object's run into the ground-truth layout first
        pred_root = output_dir / "renders"
        for name in consistent4d_objects(cfg.gt_root):
            run_dir = latest_finished_run(Path(cfg.runs_root) / name)
            log.info("eval: rendering %s at the evaluation views", run_dir)
            save_view_frames(pred_root / name, _render(cfg, run_dir, device))
    return score_consistent4d_folders(cfg.gt_root, pred_root, suite, cfg.size)


def _animate124(cfg: DictConfig, suite: MetricSuite, output_dir: Path, device: torch.device) -> dict:
    if cfg.gt_root is None:
        raise DynaPoseError("benchmark=animate124 needs gt_root=path/to/animate124/benchmark (its image folders)")
    objects = {}
    for case in animate124_cases(cfg.gt_root):
        renders = _render(cfg, latest_finished_run(Path(cfg.runs_root) / case.name), device)
        objects[case.name] = score_animate124(renders, load_animate124_image(case), suite)
    clip_means = {name: scores["clip"]["mean"] for name, scores in objects.items() if "mean" in scores["clip"]}
    summary = {"clip": {"mean": sum(clip_means.values()) / len(clip_means), "per_object": clip_means}}
    return {"objects": objects, "summary": summary if clip_means else {"clip": suite.skip_entry("clip")}}


def _ground_truth(cfg: DictConfig, suite: MetricSuite, output_dir: Path, device: torch.device) -> dict:
    run_dir = latest_finished_run(Path(cfg.run_dir))
    sample_dir = run_dir / "input" / "ground_truth"
    if not sample_dir.is_dir():
        raise DynaPoseError(
            f"{run_dir} has no ground truth (input/ground_truth): benchmark=ground_truth scores "
            "experiment=ground_truth and experiment=synthetic runs"
        )
    sample = load_sample(sample_dir)
    truth = composite(sample.eval_renders.transpose(0, 1), WHITE)  # [V, T, H, W, 3]
    pred = render_run(run_dir, sample.eval_cameras(), cfg.backend, device)
    pool = FVDPool(suite.i3d) if suite.i3d is not None else None
    name = run_dir.parent.name
    per_object = {name: score_consistent4d(pred, truth, suite, sample.eval_renders.shape[2], pool, name)}
    return {"objects": per_object, "summary": summarize_consistent4d(per_object, suite, pool)}


def evaluation_azimuths(cfg: DictConfig) -> list[float]:
    """`views.azimuths`, or the benchmark's own when null (Consistent4D's; Animate124 publishes none).

    Consistent4D's azimuths turn the same way as ours: from the input camera towards its own
    right (threestudio's uncond_t.py cameras, which its author gives for reproducing the views;
    tests/test_eval_views.py checks the mapping).
    """
    if cfg.views.azimuths is not None:
        return [float(azimuth) for azimuth in cfg.views.azimuths]
    if cfg.benchmark == "consistent4d":
        return list(CONSISTENT4D_AZIMUTHS)
    raise DynaPoseError(
        f"views.azimuths is not set and benchmark={cfg.benchmark} publishes no evaluation cameras; give the "
        "azimuths (degrees, 0 = the input view) that match your ground truth, e.g. views.azimuths=[0,90,180,270]"
    )


def _render(cfg: DictConfig, run_dir: Path, device: torch.device) -> torch.Tensor:
    views = cfg.views
    azimuths = torch.tensor(evaluation_azimuths(cfg), dtype=torch.float32)
    elevations = torch.full((len(azimuths),), float(views.elevation))
    cameras = orbit_cameras(elevations, azimuths, views.radius, views.fovy, cfg.size, cfg.size)
    return render_run(run_dir, cameras, cfg.backend, device)


_SCORERS = {"consistent4d": _consistent4d, "animate124": _animate124, "ground_truth": _ground_truth}
_WHAT_TO_PASS = {
    "consistent4d": "benchmark=consistent4d needs pred_root=<renders in the eval_gt layout> or runs_root=<our runs>",
    "animate124": "benchmark=animate124 needs runs_root=<our runs, one per case>",
    "ground_truth": "benchmark=ground_truth needs run_dir=<an experiment=ground_truth or synthetic run>",
}
