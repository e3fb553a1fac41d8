"""Held-out-view evaluation against the synthetic subject's ground truth."""

from collections.abc import Callable

import torch

from .cameras import reference_camera
from .data.image import composite
from .metrics import load_lpips, lpips_distance, psnr, ssim
from .stages.outputs import render_views


def evaluate_frames(
    gaussians_at: Callable[[int], dict[str, torch.Tensor]],  # frame -> activated Gaussians
    sample,  # SyntheticSample
    frames: list[int],
    background: torch.Tensor,  # [3]
    backend: str,
) -> dict:
    """PSNR / SSIM (and LPIPS when its weights are present) at the held-out views and at the
    reference view, for each frame; means over views, then frames. The cameras are the ones
    the ground truth was rendered with, whatever the training cameras are."""
    size = sample.image.shape[0]
    device = background.device
    heldout = sample.eval_cameras()
    reference = reference_camera(size, size)
    lpips_model, lpips_reason = load_lpips()
    per_frame = {"heldout_psnr": [], "heldout_ssim": [], "reference_psnr": []}
    if lpips_model is not None:
        per_frame["heldout_lpips"] = []
    for frame in frames:
        gaussians = gaussians_at(frame)
        renders = render_views(gaussians, heldout.to(device), background, backend)  # [V, H, W, 3]
        targets = composite(sample.eval_renders[frame], background.cpu())  # [V, H, W, 3]
        per_frame["heldout_psnr"].append(_mean([psnr(r, t) for r, t in zip(renders, targets)]))
        per_frame["heldout_ssim"].append(_mean([ssim(r, t) for r, t in zip(renders, targets)]))
        if lpips_model is not None:
            per_frame["heldout_lpips"].append(
                _mean([lpips_distance(lpips_model, r, t) for r, t in zip(renders, targets)])
            )
        reference_render = render_views(gaussians, reference.to(device), background, backend)[0]
        per_frame["reference_psnr"].append(
            psnr(reference_render, composite(sample.driving_video[frame], background.cpu()))
        )
    result = {name: _mean(values) for name, values in per_frame.items()}
    result["per_frame"] = per_frame
    result["frames"] = list(frames)
    result["heldout_azimuths"] = sample.eval_azimuths.tolist()
    if lpips_model is None:
        result["heldout_lpips"] = lpips_reason
    return result


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)
