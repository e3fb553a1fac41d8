"""Novel-view supervision for the static stage: one interface, several priors.

A prior scores renders of random views: `prior.loss(colors, alphas, views, step_ratio)`
returns a scalar to minimise, the mean over the views of a per-view term, so the stages can
score the views in chunks (chunks.py). `zero123` / `stable_zero123` distil Zero-1-to-3's
score (SDS); `oracle` compares with a ground-truth sample's own training views.
"""

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import torch
from omegaconf import DictConfig

from ..cameras import Cameras
from ..data.sample import Sample
from ..errors import DynaPoseError
from ..pretrained import PretrainedModel, resolve_pretrained

# <stage>.prior -> where its weights live by default; `<stage>.model` overrides the location.
ZERO123_MODELS = {
    "zero123": PretrainedModel("Zero123-XL", "ashawkey/zero123-xl-diffusers", "static.model", "MIT"),
    "stable_zero123": PretrainedModel(
        "Stable Zero123",
        "ashawkey/stable-zero123-diffusers",
        "static.model",
        "Stability AI Non-Commercial Research Community License (stabilityai/stable-zero123 on Hugging Face)",
    ),
}


@dataclass
class ViewBatch:
    """The random views a prior scores, with the orbit angles Zero123-style priors condition on."""

    cameras: Cameras
    elevations: torch.Tensor  # [B] degrees
    azimuths: torch.Tensor  # [B] degrees, relative to the reference view
    radius: float
    frames: torch.Tensor | None = None  # [B] index of each view's reference (driving frame); None: all the first
    backgrounds: torch.Tensor | None = None  # [B, 3] the colour each view was rendered over; None: white
    view_indices: torch.Tensor | None = None  # [B] each view's index among the oracle's training views
    # [B] int64: the seed of each view's own random draws (SDS noise), so that a view's loss does not depend on
    # which other views share its chunk; None: drawn from the global RNG when scored
    noise_seeds: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.elevations)

    def __getitem__(self, index: slice) -> "ViewBatch":
        """The views in `index` (a slice), every per-view field sliced alike."""

        def part(values):
            return None if values is None else values[index]

        return ViewBatch(
            self.cameras[index], self.elevations[index], self.azimuths[index], self.radius, part(self.frames),
            part(self.backgrounds), part(self.view_indices), part(self.noise_seeds),
        )  # fmt: skip

    def reference_indices(self) -> torch.Tensor:
        return torch.zeros(len(self.elevations), dtype=torch.long) if self.frames is None else self.frames.long()


def draw_noise_seeds(count: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """`count` seeds [count] int64 for ViewBatch.noise_seeds, from `generator` (None: the global RNG)."""
    return torch.randint(0, 2**62, (count,), generator=generator, dtype=torch.int64)


def prior_weights(settings: DictConfig, stage: str) -> list[PretrainedModel]:
    """The pretrained model a stage's `settings` need (none for the oracle or no prior)."""
    if settings.prior not in ZERO123_MODELS:
        return []
    weights = replace(ZERO123_MODELS[settings.prior], config_key=f"{stage}.model")
    return [replace(weights, location=str(settings.model)) if settings.model else weights]


class Prior(Protocol):
    """Scores renders of novel views; the stages minimise `loss` (static and dynamic alike).

    `loss` must be the mean over the views of a term that depends on each view alone (its
    render, its ViewBatch fields and its noise seed): score_in_chunks relies on it.
    """

    def loss(
        self,
        colors: torch.Tensor,  # [B, H, W, 3] the renders, over views.backgrounds
        alphas: torch.Tensor,  # [B, H, W, 1]
        views: ViewBatch,
        step_ratio: float,  # training progress in [0, 1]: priors anneal on it (SDS's max timestep)
    ) -> torch.Tensor: ...  # a scalar


def build_prior(
    settings: DictConfig,
    stage: str,
    references: torch.Tensor,  # [F, H, W, 4] RGBA: the input image (F = 1) or the driving frames
    camera: DictConfig,  # the reference view: `elevation` (degrees) and `radius`
    device: torch.device,
    ground_truth: Callable[[], Sample | None] = lambda: None,  # the run's sample, read only when needed
) -> Prior | None:
    """The prior named by `settings.prior` (the settings of `stage`: static or dynamic), or None for `none`."""
    name = settings.prior
    if name == "none":
        return None
    if name not in BUILDERS:
        raise DynaPoseError(f"unknown {stage}.prior={name!r}; choose one of none, {', '.join(BUILDERS)}")
    return BUILDERS[name](settings, stage, references, camera, device, ground_truth)


def _oracle(settings, stage, references, camera, device, ground_truth) -> Prior:
    sample = ground_truth()
    if sample is None:
        raise DynaPoseError(f"{stage}.prior=oracle needs ground truth: use it with experiment=ground_truth sample=DIR")
    from .oracle import OraclePrior

    return OraclePrior(sample, needs_every_frame=stage == "dynamic")


def _zero123(settings, stage, references, camera, device, ground_truth) -> Prior:
    from .zero123 import Zero123Prior
    from .zero123_model import load_zero123

    (weights,) = prior_weights(settings, stage)
    half = settings.sds.half_precision and device.type == "cuda"  # fp16 is slow on CPU, and NaN-prone there
    components = load_zero123(resolve_pretrained(weights), device, torch.float16 if half else torch.float32)
    sds, stable = settings.sds, settings.prior == "stable_zero123"
    return Zero123Prior(
        components, references, sds.guidance_scale, tuple(sds.max_timestep), stable,
        reference_elevation=camera.elevation, reference_radius=camera.radius,
    )  # fmt: skip


# <stage>.prior -> its builder: a new prior is its module plus one line here.
BUILDERS = {"oracle": _oracle, "zero123": _zero123, "stable_zero123": _zero123}
PRIORS = ("none", *BUILDERS)  # what <stage>.prior accepts (config_schema.py)
