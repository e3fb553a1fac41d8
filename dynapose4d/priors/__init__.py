"""Novel-view supervision for the static stage: one interface, several priors.

A prior scores renders of random views: `prior.loss(colors, alphas, views, step_ratio)`
returns a scalar to minimise. `oracle` compares with ground-truth renders of the
synthetic subject; Zero123 score distillation plugs into the same slot.
"""

from dataclasses import dataclass

import torch

from ..cameras import Cameras
from ..errors import DynaPoseError

PRIORS = ("none", "oracle")


@dataclass
class ViewBatch:
    """The random views a prior scores, with the orbit angles Zero123-style priors condition on."""

    cameras: Cameras
    elevations: torch.Tensor  # [B] degrees
    azimuths: torch.Tensor  # [B] degrees, relative to the reference view
    radius: float


def build_prior(name: str, subject=None, background: torch.Tensor | None = None):
    """The prior called `name`, or None for `none`."""
    if name == "none":
        return None
    if name == "oracle":
        if subject is None:
            raise DynaPoseError("static.prior=oracle needs ground truth: use it with experiment=synthetic")
        from .oracle import OraclePrior

        return OraclePrior(subject, background)
    raise DynaPoseError(f"unknown static.prior={name!r}; choose one of {', '.join(PRIORS)}")
