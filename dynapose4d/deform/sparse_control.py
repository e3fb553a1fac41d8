"""Sparse-control deformation: SC4D (Wu et al., "SC4D: Sparse-Controlled Video-to-4D Generation", ECCV 2024).

M control nodes carry the motion; every Gaussian follows its K nearest controls:

    control k at time t:  rotation q_k(t), translation T_k(t) = MLP(PE(c_k), PE(t))
    Gaussian at x, q:     x' = sum_k w_k (R_k (x - c_k) + c_k + T_k)        (linear blend skinning
                          q' = normalize(sum_k w_k q_k) * q                  in the controls' frames)
                          w_k = exp(-|x - c_k|^2 / (2 r_k^2)) / sum_j (...)

with canonical control positions c_k and radii r_k learnable (SC4D's fine stage).
The binding depends on a point's position only, so arbitrary points (lifted
keypoints) deform like Gaussians. Scales are left unchanged, as in SC4D.
"""

import math

import torch
import torch.nn.functional as F

from ..geometry import quat_multiply, quat_to_matrix, unit_quats
from ..rules import Integer, Number
from . import DEFORMATIONS, Deformation


def farthest_point_sampling(points: torch.Tensor, count: int) -> torch.Tensor:
    """Indices [min(count, N)] of a farthest point sample of `points` [N, 3].

    Deterministic: it starts from the point nearest the centroid and argmax breaks
    ties by the lowest index. One pass over N per sample, so O(N count).
    """
    n = points.shape[0]
    if count >= n:
        return torch.arange(n, device=points.device)
    indices = torch.empty(count, dtype=torch.long, device=points.device)
    indices[0] = (points - points.mean(dim=0)).square().sum(dim=-1).argmin()
    nearest = (points - points[indices[0]]).square().sum(dim=-1)  # [N] squared distance to the sample
    for i in range(1, count):
        indices[i] = nearest.argmax()
        nearest = torch.minimum(nearest, (points - points[indices[i]]).square().sum(dim=-1))
    return indices


@torch.no_grad()
def knn(queries: torch.Tensor, points: torch.Tensor, k: int, chunk: int = 8192) -> torch.Tensor:
    """Indices [Q, k] of the k nearest `points` [M, 3] to each of `queries` [Q, 3], nearest first.

    Chunked so the [chunk, M] distance matrix stays small for large Q.
    """
    return torch.cat(
        [torch.cdist(part, points).topk(k, dim=-1, largest=False).indices for part in queries.split(chunk)]
    )


def positional_encoding(x: torch.Tensor, num_freqs: int) -> torch.Tensor:
    """NeRF encoding [..., D (1 + 2 num_freqs)] of `x` [..., D]: x, sin(2^i x), cos(2^i x) for i < num_freqs.

    Frequencies 2^i without pi, as Deformable-3DGS's embedder that SC4D's TimeNet uses.
    """
    freqs = 2.0 ** torch.arange(num_freqs, dtype=x.dtype, device=x.device)  # [L]
    angles = (x[..., None] * freqs).flatten(-2)  # [..., D L]
    return torch.cat([x, torch.sin(angles), torch.cos(angles)], dim=-1)


def initial_radii(controls: torch.Tensor, k: int) -> torch.Tensor:
    """Radius [M] of each control: its mean distance to its k nearest other controls (SC4D's r_c init)."""
    m = controls.shape[0]
    if m == 1:  # a lone control has weight 1 whatever its radius
        return torch.ones(1, device=controls.device)
    distances = torch.cdist(controls, controls)  # [M, M]
    distances.fill_diagonal_(math.inf)
    nearest = distances.topk(min(k, m - 1), dim=-1, largest=False).values  # [M, k]
    # Coincident controls would give log(0); 1e-6 is far below any Gaussian's size.
    return nearest.mean(dim=-1).clamp_min(1e-6)


@DEFORMATIONS.register(
    "sparse_control",
    schema={
        "num_controls": Integer(min=1),
        "k_neighbors": Integer(min=1),
        "width": Integer(min=1),
        "depth": Integer(min=1),
        "pos_freqs": Integer(min=0),
        "time_freqs": Integer(min=0),
        "init_radius_scale": Number(above=0),
    },
)
class SparseControlDeformation(Deformation):
    """SC4D's control nodes + motion MLP + linear blend skinning.

    Args:
        means: [N, 3] canonical centres; the controls are a farthest point sample of them.
        num_controls: M (SC4D and the paper: 512); all N points if N < M.
        k_neighbors: K controls that move each point (SC4D: 4).
        width, depth: motion MLP size (SC4D's TimeNet: 256, 8).
        pos_freqs, time_freqs: positional encoding frequencies (SC4D: 10, 6).
        init_radius_scale: multiplies the initial control radii.
    """

    def __init__(
        self,
        means: torch.Tensor,
        num_controls: int = 512,
        k_neighbors: int = 4,
        width: int = 128,
        depth: int = 4,
        pos_freqs: int = 8,
        time_freqs: int = 4,
        init_radius_scale: float = 1.0,
    ):
        super().__init__()
        means = means.detach()
        controls = means[farthest_point_sampling(means, num_controls)].clone()  # [M, 3]
        self.controls = torch.nn.Parameter(controls)
        radii = initial_radii(controls, k_neighbors) * init_radius_scale  # [M]
        self.log_radii = torch.nn.Parameter(torch.log(radii))
        self.k = min(k_neighbors, controls.shape[0])
        self.pos_freqs, self.time_freqs = pos_freqs, time_freqs

        in_dim = 3 * (1 + 2 * pos_freqs) + (1 + 2 * time_freqs)
        layers = [torch.nn.Linear(in_dim, width), torch.nn.ReLU()]
        for _ in range(depth - 1):
            layers += [torch.nn.Linear(width, width), torch.nn.ReLU()]
        # 3 translation + 4 quaternion residual around the identity; zero so motion starts at rest.
        last = torch.nn.Linear(width, 7)
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)
        self.mlp = torch.nn.Sequential(*layers, last).to(means.device)

    @property
    def num_controls(self) -> int:
        return self.controls.shape[0]

    def control_motion(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-control rigid motion at times `t` [B]: unit quaternions [B, M, 4], translations [B, M, 3].

        The rotation is normalize(identity + residual): smooth everywhere, unlike an
        axis-angle vector whose axis is undefined at zero, and exactly the identity at init.
        """
        batch, m = t.shape[0], self.num_controls
        space = positional_encoding(self.controls, self.pos_freqs)  # [M, Dc]
        time = positional_encoding(t.to(space)[:, None], self.time_freqs)  # [B, Dt]
        inputs = torch.cat([space.expand(batch, m, -1), time[:, None].expand(batch, m, -1)], dim=-1)  # [B, M, D]
        out = self.mlp(inputs)  # [B, M, 7]
        return unit_quats(out[..., 3:]), out[..., :3]

    def skinning(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The K controls [N, K] (indices) binding each point [N, 3] and their weights [N, K] (sum 1).

        The neighbours are found again on every call from the current canonical
        controls (cheap next to the MLP for N up to ~1e5); the weights stay
        differentiable in the points, control positions and radii. softmax of
        -d^2 / 2r^2 is the normalised Gaussian weight without its underflow for far points.
        """
        indices = knn(points.detach(), self.controls.detach(), self.k)  # [N, K]
        sq_dist = (points[:, None] - self.controls[indices]).square().sum(dim=-1)  # [N, K]
        sq_radius = torch.exp(2.0 * self.log_radii)[indices]  # [N, K]
        return indices, torch.softmax(-sq_dist / (2.0 * sq_radius), dim=-1)

    def forward(
        self, means: torch.Tensor, quats: torch.Tensor, log_scales: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rotations, translations = self.control_motion(t)  # [B, M, 4], [B, M, 3]
        indices, weights = self.skinning(means)  # [N, K], [N, K]
        offsets = means[:, None] - self.controls[indices]  # [N, K, 3]
        # R (x - c) + c + T = x + (R - I)(x - c) + T: adding the blended displacement to x
        # keeps the identity exact (R - I = 0, T = 0) instead of rounding (x - c) + c.
        eye = torch.eye(3, dtype=means.dtype, device=means.device)
        linear = (quat_to_matrix(rotations) - eye)[:, indices]  # [B, N, K, 3, 3]
        displacement = torch.einsum("bnkij,nkj->bnki", linear, offsets) + translations[:, indices]  # [B, N, K, 3]
        new_means = means + (weights[..., None] * displacement).sum(dim=2)  # [B, N, 3]

        neighbour_quats = rotations[:, indices]  # [B, N, K, 4]
        # q and -q are one rotation; blending opposite signs would cancel, so align to the nearest control.
        agree = (neighbour_quats * neighbour_quats[:, :, :1]).sum(dim=-1, keepdim=True) >= 0  # [B, N, K, 1]
        neighbour_quats = torch.where(agree, neighbour_quats, -neighbour_quats)
        blended = F.normalize((weights[..., None] * neighbour_quats).sum(dim=2), dim=-1)  # [B, N, 4]
        new_quats = quat_multiply(blended, quats)  # [B, N, 4], unit because both factors are
        return new_means, new_quats, log_scales.expand(t.shape[0], *log_scales.shape)

    def motion_points(self, means: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The control nodes at times `t`: [B, M, 3] = c + T(t); `means` is not needed."""
        return self.controls + self.control_motion(t)[1]

    def rest_points(self, means: torch.Tensor) -> torch.Tensor:
        """The canonical control nodes [M, 3]."""
        return self.controls
