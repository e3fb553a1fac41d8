"""The cameras of the novel views a prior scores: random orbit views, or the oracle's own views."""

import torch
from omegaconf import DictConfig

from ..cameras import Cameras, sample_orbit_cameras
from ..priors import Prior
from ..priors.oracle import OraclePrior


def novel_cameras(
    prior: Prior, count: int, size: int, generator: torch.Generator, camera: DictConfig
) -> tuple[Cameras, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """`count` cameras rendering `size`²: cameras, elevations [count], azimuths [count] (degrees) and, for the
    oracle, each view's index among its training views (None otherwise).

    SDS priors can score any view, so those are uniform on the orbit of `camera` (static.camera);
    ground truth exists only at the sample's training views, so the oracle picks among them.
    """
    if isinstance(prior, OraclePrior):
        return prior.sample_cameras(count, size, generator)
    cameras, elevations, azimuths = sample_orbit_cameras(
        count, generator, camera.elevation_range, camera.azimuth_range, camera.radius, camera.fovy,
        size, size, reference_elevation=camera.elevation,
    )  # fmt: skip
    return cameras, elevations, azimuths, None
