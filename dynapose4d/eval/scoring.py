"""Benchmark numbers from frames, following each benchmark's own averaging.

Consistent4D (compute_image_level_metrics.py): every frame resized to 512x512 (PIL bicubic,
8-bit), per-frame CLIP / LPIPS / PSNR / SSIM, mean over a view's frames, mean over the 4 views
(an object's number), mean over objects. FVD is Consistent4D's per-view distance averaged the
same way, and `fvd_pooled` a distance over the features of all views and objects (fvd.py), both
from the frames at their own resolution as compute_fvd.py reads them.

Every metric entry is {"mean": ..., "per_view": [...]} (or "per_object"), or
{"skipped": reason} when its weights are missing.
"""

from collections.abc import Iterable
from pathlib import Path

import torch

from ..errors import DynaPoseError
from ..pretrained.clip import clip_similarity
from .frames import resize_frames
from .fvd import FVDPool
from .image_metrics import psnr, ssim
from .layouts import consistent4d_objects, load_consistent4d_views
from .lpips_metric import lpips_distance
from .suite import MetricSuite

CONSISTENT4D_SIZE = 512
IMAGE_METRICS = ("clip", "lpips", "psnr", "ssim")


def score_consistent4d(
    pred: torch.Tensor,  # [V, T, H, W, 3] in [0, 1], renders composited on white
    gt: torch.Tensor,  # [V, T, H', W', 3] in [0, 1], ground truth composited on white
    suite: MetricSuite,
    size: int = CONSISTENT4D_SIZE,
    fvd_pool: FVDPool | None = None,  # gathers this object's I3D features for the FVDs
    name: str = "object",  # the object's name in `fvd_pool`
) -> dict:
    """One object's Consistent4D image-level scores: per view, and their mean."""
    if pred.shape[:2] != gt.shape[:2]:
        raise DynaPoseError(
            f"renders have {pred.shape[0]} views x {pred.shape[1]} frames, "
            f"the ground truth {gt.shape[0]} views x {gt.shape[1]} frames"
        )
    pred_frames, gt_frames = resize_frames(pred, size), resize_frames(gt, size)  # [V, T, size, size, 3]
    per_view = [_view_scores(p, g, suite) for p, g in zip(pred_frames, gt_frames)]  # [V] {metric: mean over frames}
    result = {}
    for metric in IMAGE_METRICS:
        if metric in per_view[0]:
            values = [view[metric] for view in per_view]
            result[metric] = {"mean": _mean(values), "per_view": values}
        else:
            result[metric] = suite.skip_entry(metric)
    if fvd_pool is not None:
        fvd_pool.add(name, gt, pred)
    return result


def _view_scores(pred: torch.Tensor, gt: torch.Tensor, suite: MetricSuite) -> dict[str, float]:
    """Means over the frames [T, S, S, 3] of one view, for each metric the suite has."""
    scores = {
        "psnr": _mean(psnr(p, g) for p, g in zip(pred, gt)),
        "ssim": _mean(ssim(p, g) for p, g in zip(pred, gt)),
    }
    if suite.lpips is not None:
        device = suite.device
        scores["lpips"] = _mean(lpips_distance(suite.lpips, p.to(device), g.to(device)) for p, g in zip(pred, gt))
    if suite.clip is not None:
        scores["clip"] = clip_similarity(suite.clip, pred, gt)  # frame t against frame t, mean over frames
    return scores


def summarize_consistent4d(per_object: dict[str, dict], suite: MetricSuite, fvd_pool: FVDPool | None) -> dict:
    """Means over objects of `score_consistent4d` results, and both FVDs."""
    summary = {}
    for metric in IMAGE_METRICS:
        means = {name: scores[metric]["mean"] for name, scores in per_object.items() if "mean" in scores[metric]}
        if means:
            summary[metric] = {"mean": _mean(means.values()), "per_object": means}
        else:
            summary[metric] = suite.skip_entry(metric)
    if fvd_pool is None:
        summary["fvd"] = suite.skip_entry("fvd")
    else:
        summary["fvd"], summary["fvd_pooled"] = fvd_pool.consistent4d(), {"mean": fvd_pool.pooled()}
    return summary


def score_consistent4d_folders(
    gt_root: str | Path, pred_root: str | Path, suite: MetricSuite, size: int = CONSISTENT4D_SIZE
) -> dict:
    """Score renders in `pred_root/<object>/eval_{v}/{t}.png` against `gt_root` (same layout):
    {"objects": {name: per-object scores}, "summary": means over objects and FVD}."""
    objects = consistent4d_objects(gt_root)
    missing = [name for name in objects if not (Path(pred_root) / name).is_dir()]
    if missing:
        raise DynaPoseError(f"renders {pred_root}: no directory for {', '.join(missing)}")
    fvd_pool = FVDPool(suite.i3d) if suite.i3d is not None else None
    per_object = {
        name: score_consistent4d(
            load_consistent4d_views(pred_root, name),
            load_consistent4d_views(gt_root, name),
            suite,
            size,
            fvd_pool,
            name,
        )  # fmt: skip
        for name in objects
    }
    return {"objects": per_object, "summary": summarize_consistent4d(per_object, suite, fvd_pool)}


def score_animate124(pred: torch.Tensor, reference: torch.Tensor, suite: MetricSuite) -> dict:
    """CLIP similarity of every rendered frame [V, T, H, W, 3] to the input image [H, W, 3]:
    mean over frames, then views. Animate124 has no multi-view ground truth, so nothing else applies."""
    if suite.clip is None:
        return {"clip": suite.skip_entry("clip")}
    values = [clip_similarity(suite.clip, view, reference) for view in pred]
    return {"clip": {"mean": _mean(values), "per_view": values}}


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values)
