"""The oracle prior: ground-truth renders of the synthetic subject at the sampled views."""

import torch

from ..data.image import WHITE
from . import ViewBatch


class OraclePrior:
    """Mean squared error to the synthetic subject rendered at the same cameras, frames and backgrounds."""

    def __init__(self, subject):
        self.subject = subject

    @torch.no_grad()
    def targets(self, views: ViewBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Ground truth [B, H, W, 3], [B, H, W, 1]: each view at its frame (the driving video's index),
        over its own background."""
        cameras, frames = views.cameras.to("cpu"), views.reference_indices()
        rgb = torch.empty(len(frames), cameras.height, cameras.width, 3)
        alpha = torch.empty(len(frames), cameras.height, cameras.width, 1)
        for frame in frames.unique().tolist():
            chosen = (frames == frame).nonzero()[:, 0]
            rgb[chosen], alpha[chosen] = self.subject.render(cameras[chosen], float(frame), background=WHITE.tolist())
        if views.backgrounds is not None:  # exact: a render is colour + (1 - alpha) * background
            rgb = rgb + (1 - alpha) * (views.backgrounds.cpu()[:, None, None, :] - WHITE)
        return rgb, alpha

    def loss(self, colors: torch.Tensor, alphas: torch.Tensor, views: ViewBatch, step_ratio: float) -> torch.Tensor:
        """MSE of colour plus MSE of coverage; `step_ratio` is unused (ground truth needs no annealing)."""
        rgb, alpha = self.targets(views)
        return torch.nn.functional.mse_loss(colors, rgb.to(colors)) + torch.nn.functional.mse_loss(
            alphas, alpha.to(alphas)
        )
