"""Held-out views of a run with ground truth: the numbers the training stages write to metrics.json.

Scored like scripts/eval.py scores any benchmark (image_metrics.py: Consistent4D's PSNR and
SSIM on the 8-bit grid; LPIPS with its VGG backbone when the weights are on disk), so
`benchmark=ground_truth` on the finished run reproduces them. Means are over views, then frames.
Whole-image PSNR counts every background pixel the model got right, so the PSNR on the
object's box (`heldout_psnr_object`) stands beside it.
"""

from collections.abc import Callable

import torch

from ..data.image import composite
from ..data.sample import Sample
from ..render.views import render_views
from .frames import resize_frames
from .image_metrics import object_psnr, psnr, ssim
from .lpips_metric import load_lpips, lpips_distance


def score_heldout(
    gaussians_at: Callable[[int], dict[str, torch.Tensor]],  # frame -> activated Gaussians
    sample: Sample,
    frames: list[int],
    background: torch.Tensor,  # [3]
    backend: str,
) -> dict:
    """PSNR (whole image and object box) / SSIM (and LPIPS) at the sample's held-out views and PSNR at its
    reference view, per frame.

    The cameras are the ones the ground truth was rendered with, whatever the training cameras are.
    """
    size, heldout_size = sample.image.shape[0], sample.eval_renders.shape[2]
    device = background.device
    heldout, reference = sample.eval_cameras().to(device), sample.reference_camera().to(device)
    lpips_model, lpips_reason = load_lpips()
    per_frame = {"heldout_psnr": [], "heldout_psnr_object": [], "heldout_ssim": [], "reference_psnr": []}
    if lpips_model is not None:
        per_frame["heldout_lpips"] = []
    for frame in frames:
        gaussians = gaussians_at(frame)
        truth = sample.eval_renders[frame]  # [V, H, W, 4]
        renders = on_8bit_grid(render_views(gaussians, heldout, background, backend), heldout_size)  # [V, H, W, 3]
        targets = on_8bit_grid(composite(truth, background.cpu()), heldout_size)  # [V, H, W, 3]
        per_frame["heldout_psnr"].append(_mean([psnr(r, t) for r, t in zip(renders, targets)]))
        boxes = [object_psnr(r, t, a) for r, t, a in zip(renders, targets, truth[..., 3])]
        per_frame["heldout_psnr_object"].append(_mean(boxes))
        per_frame["heldout_ssim"].append(_mean([ssim(r, t) for r, t in zip(renders, targets)]))
        if lpips_model is not None:
            distances = [lpips_distance(lpips_model, r, t) for r, t in zip(renders, targets)]
            per_frame["heldout_lpips"].append(_mean(distances))
        rendered = on_8bit_grid(render_views(gaussians, reference, background, backend)[0], size)  # [H, W, 3]
        driving = on_8bit_grid(composite(sample.driving_video[frame], background.cpu()), size)  # [H, W, 3]
        per_frame["reference_psnr"].append(psnr(rendered, driving))
    result = {name: _mean(values) for name, values in per_frame.items()}
    result["per_frame"] = per_frame
    result["frames"] = list(frames)
    result["heldout_views"] = sample.eval_views
    if lpips_model is None:
        result["heldout_lpips"] = lpips_reason
    return result


def on_8bit_grid(images: torch.Tensor, size: int) -> torch.Tensor:
    """Images [..., H, W, 3] as the benchmark reads them: 8-bit, at `size` (unchanged when it is theirs)."""
    return resize_frames(images.cpu(), size)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)
