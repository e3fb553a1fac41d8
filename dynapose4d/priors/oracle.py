"""The oracle prior: ground-truth renders of the synthetic subject at the sampled views."""

import torch

from . import ViewBatch


class OraclePrior:
    """Mean squared error to the synthetic subject rendered at the same cameras (frame 0)."""

    def __init__(self, subject, background: torch.Tensor, frame: float = 0.0):
        self.subject = subject
        self.background = background  # [3]
        self.frame = frame

    @torch.no_grad()
    def targets(self, views: ViewBatch) -> tuple[torch.Tensor, torch.Tensor]:
        rgb, alpha = self.subject.render(views.cameras.to("cpu"), self.frame, background=self.background.tolist())
        return rgb, alpha  # [B, H, W, 3], [B, H, W, 1]

    def loss(self, colors: torch.Tensor, alphas: torch.Tensor, views: ViewBatch, step_ratio: float) -> torch.Tensor:
        """MSE of colour plus MSE of coverage; `step_ratio` is unused (ground truth needs no annealing)."""
        rgb, alpha = self.targets(views)
        return torch.nn.functional.mse_loss(colors, rgb.to(colors)) + torch.nn.functional.mse_loss(
            alphas, alpha.to(alphas)
        )
