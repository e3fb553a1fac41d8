"""The dynamic stage's motion priors beyond PAL (losses.py): their neighbour graphs, built once, and their terms.

    rigidity         neighbours' offsets turn with each Gaussian (Dynamic 3D Gaussians), kNN of the Gaussians
    isometry         neighbours' distances are kept (Dynamic 3D Gaussians), kNN of the Gaussians
    arap             as-rigid-as-possible on the deformation's motion nodes: SC4D's control nodes, or the
                     Gaussians themselves for the hexplane (which has no coarser carrier)
    plane_tv         total variation of the hexplane's spatial planes (4DGaussians)
    time_smoothness  second differences along the hexplane's time axis (4DGaussians)

Each has `loss.<name>.weight` (0 = off). The graphs join every point to its `loss.neighbours`
nearest canonical neighbours, weighted by exp(-d^2 / 2 s^2) with s the median neighbour
distance, so the weights do not depend on the object's scale.
"""

import torch
from omegaconf import DictConfig

from ..deform import Deformation
from ..deform.sparse_control import knn
from ..errors import DynaPoseError
from ..geometry import quat_to_matrix
from ..losses import arap_loss, isometry_loss, plane_total_variation, rigidity_loss, time_smoothness

PRIORS = ("rigidity", "isometry", "arap", "plane_tv", "time_smoothness")
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


class MotionPriors:
    """The enabled priors of `loss` for one dynamic stage: graphs cached from its canonical model."""

    def __init__(self, loss: DictConfig, deformation: Deformation, canonical_means: torch.Tensor):
        self.weights = {name: float(loss[name].weight) for name in PRIORS if loss[name].weight > 0}
        self.deformation = deformation
        canonical_means = canonical_means.detach()
        if "rigidity" in self.weights or "isometry" in self.weights:
            self.gaussian_graph = neighbour_graph(canonical_means, loss.neighbours)
        if "arap" in self.weights:
            self.node_graph = neighbour_graph(deformation.rest_points(canonical_means).detach(), loss.neighbours)
        if set(self.weights) & set(PLANE_PRIORS) and not hasattr(deformation, "spatial_planes"):
            raise DynaPoseError(f"{' and '.join(PLANE_PRIORS)} regularise the hexplane's planes: deformation=hexplane")

    def terms(
        self,
        canonical: dict[str, torch.Tensor],  # the canonical activated Gaussians: means [N, 3], quats [N, 4]
        deformed: list[dict[str, torch.Tensor]],  # the B deformed frames' activated Gaussians
        t: torch.Tensor,  # [B] their normalised times
    ) -> dict[str, torch.Tensor]:
        """Each enabled prior's value (unweighted) for this batch."""
        terms = {}
        rest = canonical["means"].detach()
        if "rigidity" in self.weights or "isometry" in self.weights:
            means = torch.stack([gaussians["means"] for gaussians in deformed])  # [B, N, 3]
        if "rigidity" in self.weights:
            quats = torch.stack([gaussians["quats"] for gaussians in deformed])  # [B, N, 4]
            rotations = quat_to_matrix(quats) @ quat_to_matrix(canonical["quats"].detach()).transpose(-1, -2)
            terms["rigidity"] = rigidity_loss(rest, means, rotations, *self.gaussian_graph)
        if "isometry" in self.weights:
            terms["isometry"] = isometry_loss(rest, means, *self.gaussian_graph)
        if "arap" in self.weights:
            nodes = self.deformation.rest_points(rest).detach()
            terms["arap"] = arap_loss(nodes, self.deformation.motion_points(rest, t), *self.node_graph)
        if "plane_tv" in self.weights:
            terms["plane_tv"] = plane_total_variation(self.deformation.spatial_planes())
        if "time_smoothness" in self.weights:
            terms["time_smoothness"] = time_smoothness(self.deformation.time_planes())
        return terms

    def total(self, terms: dict[str, torch.Tensor]) -> torch.Tensor | float:
        return sum(self.weights[name] * value for name, value in terms.items())
