"""The oracle prior: a ground-truth sample's own training views in place of a generative model.

The stage renders the cameras this prior picks among the sample's training views
(`sample_cameras`), and the loss compares each render with that view's image at the view's
frame, over the view's background. The static stage uses the views at frame 0; the dynamic
stage needs them at every frame (a sample with `train_frames` = its frame count).
"""

import torch
from omegaconf import DictConfig

from ..cameras import Cameras
from ..data.image import WHITE
from ..data.sample import Sample
from ..errors import DynaPoseError
from . import PRIORS, Prior, PriorContext, ViewBatch


@PRIORS.register("oracle")
class OraclePrior(Prior):
    """Mean squared error of colour and coverage to the sample's training views."""

    @classmethod
    def build(cls, context: PriorContext) -> "OraclePrior":
        sample = context.ground_truth()
        if sample is None:
            raise DynaPoseError(
                f"{context.stage}.prior=oracle needs ground truth: use it with experiment=ground_truth sample=DIR"
            )
        return cls(sample, needs_every_frame=context.stage == "dynamic")

    def __init__(self, sample: Sample, needs_every_frame: bool):
        renders = sample.train_renders  # [F, U, H, W, 4]
        if renders.shape[1] == 0:
            raise DynaPoseError(f"the oracle prior needs training views, and sample {sample.name!r} has none")
        if needs_every_frame and len(renders) != sample.num_frames:
            raise DynaPoseError(
                f"dynamic.prior=oracle needs training views at every frame; sample {sample.name!r} has them at "
                f"frame 0 only (scripts/make_synthetic_sample.py every_frame=true writes them all)"
            )
        self.cameras = sample.train_cameras()  # [U] at the images' size
        premultiplied = renders[..., :3] * renders[..., 3:]
        self.images = torch.cat([premultiplied, renders[..., 3:]], dim=-1)  # [F, U, H, W, 4], premultiplied
        self._resized: dict[int, torch.Tensor] = {}

    def sample_cameras(
        self, count: int, size: int, generator: torch.Generator, camera: DictConfig | None = None
    ) -> tuple[Cameras, torch.Tensor, torch.Tensor, torch.Tensor]:
        """`count` training views drawn uniformly, rendering `size`²: cameras, elevations [count],
        azimuths [count] (degrees, for the ViewBatch) and their indices [count] among the training views."""
        picks = torch.randint(len(self.cameras), (count,), generator=generator)
        cameras = self.cameras[picks].resized(size, size)
        elevations, azimuths, _ = cameras.orbit_angles()
        return cameras, elevations, azimuths, picks

    @torch.no_grad()
    def targets(self, views: ViewBatch, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Ground truth at `size`² over each view's background: rgb [B, size, size, 3], alpha [B, size, size, 1]."""
        if views.view_indices is None:
            raise DynaPoseError("the oracle prior scores only the views it picked (sample_cameras)")
        images = self._at_size(size)
        frames = views.reference_indices() if len(images) > 1 else torch.zeros_like(views.view_indices)
        chosen = images[frames, views.view_indices]  # [B, S, S, 4]
        backgrounds = WHITE if views.backgrounds is None else views.backgrounds.cpu()[:, None, None, :]
        alpha = chosen[..., 3:]
        return chosen[..., :3] + (1 - alpha) * backgrounds, alpha

    def loss(self, colors: torch.Tensor, alphas: torch.Tensor, views: ViewBatch, step_ratio: float) -> torch.Tensor:
        """MSE of colour plus MSE of coverage; `step_ratio` is unused (ground truth needs no annealing)."""
        rgb, alpha = self.targets(views, colors.shape[1])
        return torch.nn.functional.mse_loss(colors, rgb.to(colors)) + torch.nn.functional.mse_loss(
            alphas, alpha.to(alphas)
        )

    def _at_size(self, size: int) -> torch.Tensor:
        """The premultiplied images at `size`² (area-averaged when shrinking), cached per size."""
        if size not in self._resized:
            frames, views, height, width, _ = self.images.shape
            flat = self.images.reshape(-1, height, width, 4).permute(0, 3, 1, 2)
            mode = "area" if size <= min(height, width) else "bilinear"
            resized = torch.nn.functional.interpolate(flat, size=(size, size), mode=mode)
            self._resized[size] = resized.permute(0, 2, 3, 1).reshape(frames, views, size, size, 4)
        return self._resized[size]
