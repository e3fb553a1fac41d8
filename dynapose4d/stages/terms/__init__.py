"""The loss terms of the training stages: one registered function each, weighted by `<stage>.loss`.

A term is registered with the stage it belongs to and built once per stage:

    @DYNAMIC_TERMS.register("depth_smooth")
    def depth_smooth(stage: DynamicStage) -> Term | None:    # None: the term does not apply to this run
        return lambda batch: ...                              # batch: DynamicBatch -> a scalar tensor

and weighted by its entry in the stage's config, `dynamic.loss.depth_smooth: 0.1` (0: off, and
not built). Every module of this package is imported when a stage first builds its terms, so a
new module here needs no other line; one outside the package is named in `plugins=[module]`.
Each step computes the enabled terms unweighted, logs each, and minimises their weighted sum
(`weighted_total`).
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from ...errors import DynaPoseError
from ...priors import ViewBatch
from ...registry import Registry
from ...rules import WEIGHT

Term = Callable[..., torch.Tensor]  # batch -> a scalar

STATIC_TERMS = Registry("static loss term", __name__)
DYNAMIC_TERMS = Registry("dynamic loss term", __name__)


@dataclass
class StaticBatch:
    """What one static step rendered: the reference view and the prior's novel views."""

    renders: torch.Tensor  # [1, S, S, 3] the reference view, in [0, 1]
    alphas: torch.Tensor  # [1, S, S, 1]
    frames: torch.Tensor  # [1] zeros: the stage's targets are indexed like the dynamic stage's
    views: ViewBatch | None = None  # None: no prior
    novel_renders: torch.Tensor | None = None  # [V, s, s, 3] over views.backgrounds, in [0, 1]
    novel_alphas: torch.Tensor | None = None  # [V, s, s, 1]


@dataclass
class DynamicBatch(StaticBatch):
    """What one dynamic step deformed and rendered, for B driving frames (V = B x views_per_frame)."""

    t: torch.Tensor | None = None  # [B] the frames' normalised times
    deformed: list[dict[str, torch.Tensor]] | None = None  # per frame, the activated deformed Gaussians


def build_terms(registry: Registry, stage, weights: Mapping[str, float]) -> dict[str, Term]:
    """The terms of `registry` with a weight above 0 that apply to `stage`, built once."""
    terms = {}
    for name, weight in weights.items():
        if weight > 0:
            term = registry[name].component(stage)
            if term is not None:
                terms[name] = term
    if not terms:
        raise DynaPoseError(f"{stage.name}.loss: every term is off (weight 0) or does not apply; nothing to train")
    return terms


def loss_schema(registry: Registry) -> dict:
    """The rules of `<stage>.loss`: a weight per registered term; 0 switches it off."""
    return {entry.name: WEIGHT for entry in registry}


def weighted_total(values: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> torch.Tensor:
    """sum_name weights[name] x values[name]: the stage's objective."""
    return sum(weights[name] * value for name, value in values.items())
