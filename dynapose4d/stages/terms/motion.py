"""The dynamic stage's motion priors beyond PAL: what one reference view cannot pin down (depth, stretch).

    rigidity         neighbours' offsets turn with each Gaussian (Dynamic 3D Gaussians), kNN of the Gaussians
    isometry         neighbours' distances are kept (Dynamic 3D Gaussians), kNN of the Gaussians
    arap             as-rigid-as-possible on the deformation's motion nodes: SC4D's control nodes, or the
                     Gaussians themselves for the hexplane (which has no coarser carrier)
    plane_tv         total variation of the hexplane's spatial planes (4DGaussians)
    time_smoothness  second differences along the hexplane's time axis (4DGaussians)

Each is weighted by `dynamic.loss.<name>` (0 = off, the default). The graphs join every point
to its `dynamic.neighbours` nearest canonical neighbours, weighted by exp(-d^2 / 2 s^2) with s
the median neighbour distance, so the weights do not depend on the object's scale; each graph
is built once per stage and shared by the terms that use it.
"""

import torch

from ...deform.sparse_control import knn
from ...errors import DynaPoseError
from ...geometry import quat_to_matrix
from ...losses import arap_loss, isometry_loss, plane_total_variation, rigidity_loss, time_smoothness
from . import DYNAMIC_TERMS

PLANE_PRIORS = ("plane_tv", "time_smoothness")  # need the hexplane's planes


def neighbour_graph(points: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each point's k nearest other points [N, k] and their weights [N, k] (see the module's docstring)."""
    k = min(k, len(points) - 1)
    if k < 1:
        raise DynaPoseError(f"a neighbour graph needs at least 2 points, got {len(points)}")
    indices = knn(points, points, k + 1)[:, 1:]  # the nearest is the point itself
    distances = (points[indices] - points[:, None]).norm(dim=-1)  # [N, k]
    scale = distances.median().clamp_min(1e-8)
    return indices, torch.exp(-distances.square() / (2 * scale**2))


def gaussian_graph(stage) -> tuple[torch.Tensor, torch.Tensor]:
    return stage.memo("gaussian_graph", lambda: neighbour_graph(stage.canonical_means, stage.settings.neighbours))


def stacked(deformed: list[dict[str, torch.Tensor]], key: str) -> torch.Tensor:
    return torch.stack([gaussians[key] for gaussians in deformed])  # [B, N, ...]


@DYNAMIC_TERMS.register("rigidity")
def rigidity(stage):
    graph = gaussian_graph(stage)

    def term(batch):
        rest, canonical_quats = stage.canonical_means, stage.model.activated()["quats"].detach()
        rotations = quat_to_matrix(stacked(batch.deformed, "quats")) @ quat_to_matrix(canonical_quats).transpose(-1, -2)
        return rigidity_loss(rest, stacked(batch.deformed, "means"), rotations, *graph)

    return term


@DYNAMIC_TERMS.register("isometry")
def isometry(stage):
    graph = gaussian_graph(stage)
    return lambda batch: isometry_loss(stage.canonical_means, stacked(batch.deformed, "means"), *graph)


@DYNAMIC_TERMS.register("arap")
def arap(stage):
    deformation, rest = stage.deformation, stage.canonical_means
    graph = neighbour_graph(deformation.rest_points(rest).detach(), stage.settings.neighbours)

    def term(batch):
        nodes = deformation.rest_points(rest).detach()
        return arap_loss(nodes, deformation.motion_points(rest, batch.t), *graph)

    return term


def hexplane_of(stage, name: str):
    if not hasattr(stage.deformation, "spatial_planes"):
        raise DynaPoseError(f"dynamic.loss.{name} regularises the hexplane's planes: use dynamic/deformation=hexplane")
    return stage.deformation


@DYNAMIC_TERMS.register("plane_tv")
def plane_tv(stage):
    deformation = hexplane_of(stage, "plane_tv")
    return lambda batch: plane_total_variation(deformation.spatial_planes())


@DYNAMIC_TERMS.register("time_smoothness")
def time_smoothness_term(stage):
    deformation = hexplane_of(stage, "time_smoothness")
    return lambda batch: time_smoothness(deformation.time_planes())
