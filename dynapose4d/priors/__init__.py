"""Novel-view supervision for both training stages: one interface, several priors.

A prior scores renders of random views: `prior.loss(colors, alphas, views, step_ratio)`
returns a scalar to minimise, the mean over the views of a per-view term, so the stages can
score the views in chunks (chunks.py). `zero123` / `stable_zero123` distil Zero-1-to-3's
score (SDS); `oracle` compares with a ground-truth sample's own training views. A prior is a
`Prior` subclass registered where it is defined (`@PRIORS.register("name")`); `<stage>.prior`
names it.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from ..cameras import Cameras, sample_orbit_cameras
from ..data.sample import Sample
from ..pretrained import PretrainedModel
from ..registry import Registry

# <stage>.prior -> its Prior subclass; every module of this package is imported on first use
PRIORS = Registry("prior", __name__)


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


@dataclass
class PriorContext:
    """What a prior is built from: the settings of its stage and the stage's references."""

    settings: DictConfig  # the stage's settings (static or dynamic): prior, model, sds, ...
    stage: str
    references: torch.Tensor  # [F, H, W, 4] RGBA: the input image (F = 1) or the driving frames
    camera: DictConfig  # the reference view: `elevation` (degrees) and `radius`
    device: torch.device
    ground_truth: Callable[[], Sample | None] = lambda: None  # the run's sample, read only when needed


class Prior:
    """Scores renders of novel views; the stages minimise `loss` (static and dynamic alike).

    `loss` must be the mean over the views of a term that depends on each view alone (its
    render, its ViewBatch fields and its noise seed): score_in_chunks relies on it.
    """

    @classmethod
    def build(cls, context: PriorContext) -> "Prior":
        raise NotImplementedError

    @classmethod
    def weights(cls, settings: DictConfig, stage: str) -> list[PretrainedModel]:
        """The pretrained models it loads with these settings, located before anything runs (weights.py)."""
        return []

    def loss(
        self,
        colors: torch.Tensor,  # [B, H, W, 3] the renders, over views.backgrounds
        alphas: torch.Tensor,  # [B, H, W, 1]
        views: ViewBatch,
        step_ratio: float,  # training progress in [0, 1]: priors anneal on it (SDS's max timestep)
    ) -> torch.Tensor:  # a scalar
        raise NotImplementedError

    def sample_cameras(
        self, count: int, size: int, generator: torch.Generator, camera: DictConfig
    ) -> tuple[Cameras, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """`count` cameras rendering `size`²: cameras, elevations [count], azimuths [count] (degrees) and each
        view's index among the prior's own views (None: any view).

        A score-distillation prior can score any view: uniform on the orbit of `camera`
        (static.camera); a prior with views of its own (the oracle) overrides this.
        """
        cameras, elevations, azimuths = sample_orbit_cameras(
            count, generator, camera.elevation_range, camera.azimuth_range, camera.radius, camera.fovy,
            size, size, reference_elevation=camera.elevation,
        )  # fmt: skip
        return cameras, elevations, azimuths, None

    def timestep(self, step_ratio: float) -> float | None:
        """The diffusion timestep a step at `step_ratio` scores at, to log; None for a prior without one."""
        return None


def build_prior(context: PriorContext) -> Prior | None:
    """The prior named by `<stage>.prior`, or None for `none`."""
    name = context.settings.prior
    return None if name == "none" else PRIORS[name].component.build(context)


def prior_weights(settings: DictConfig, stage: str) -> list[PretrainedModel]:
    """The pretrained models a stage's `settings` need (none for the oracle or no prior)."""
    return [] if settings.prior == "none" else PRIORS[settings.prior].component.weights(settings, stage)


def prior_choices() -> tuple[str, ...]:
    """What `<stage>.prior` accepts (the static and dynamic stages' settings schemas)."""
    return ("none", *PRIORS.names())
