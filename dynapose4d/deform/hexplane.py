"""Hexplane deformation field: DreamGaussian4D's phi, from 4DGaussians (Wu et al., CVPR 2024).

A 4D point (x, y, z, t) is projected onto the six coordinate planes xy, xz, xt, yz,
yt, zt (K-planes, Fridovich-Keil et al., CVPR 2023). Each plane is a learnable
feature image sampled bilinearly; the six features of one resolution are multiplied
elementwise and the resolutions concatenated. Small MLP heads turn the feature into
offsets of the position, rotation and log-scale of the Gaussian there:

    means' = means + dx,   quats' = normalize(1 + dq) * quats,   log_scales' = log_scales + ds

Position and log-scale offsets are added as DG4D adds them to the raw parameters. The
rotation offset is a quaternion residual around the identity composed with the
Gaussian's rotation, where DG4D adds dq to the quaternion itself: with the product,
Gaussians of different orientations in a rigidly turning region need the same dq,
and a zero dq leaves the quaternion bit-for-bit unchanged (renormalising an input
that is unit only to float precision would not). Time planes start at about 1
(TIME_PLANE_JITTER) and the heads' last layers at 0, so the field starts as the identity
and its time dependence grows from the product with the (static) spatial planes.
"""

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..geometry import quat_multiply, unit_quats
from ..rules import Integer, ListOf, Nullable, Number
from . import DEFORMATIONS, Deformation

AXES = "xyzt"
# (0,1) xy, (0,2) xz, (0,3) xt, (1,2) yz, (1,3) yt, (2,3) zt: 4DGaussians' plane order.
PLANE_AXES = list(itertools.combinations(range(4), 2))
GRID_LR_SCALE = 10.0  # plane learning rate / MLP learning rate, DG4D's ratio
# Time planes start at 1 +- this, not at exactly 1 (DG4D, K-planes): with zero heads and time planes of ones,
# the anchored field's first gradient is mathematically zero, the difference of the features at t and at the
# anchor time, and Adam's first step then followed float rounding, which changes with the device, the batch
# and the prior's chunk size. 1% keeps each time factor of the product within 1% of 1.
TIME_PLANE_JITTER = 0.01


def sample_plane(plane: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear features [P, F] of `plane` [1, F, H, W] at `coords` [P, 2] in [-1, 1] (x -> W, y -> H).

    align_corners=True puts -1 and 1 on the first and last texel; border padding
    clamps points that leave the box instead of fading their features to zero.
    """
    grid = coords.reshape(1, 1, -1, 2)  # [1, 1, P, 2]
    features = F.grid_sample(plane, grid, mode="bilinear", padding_mode="border", align_corners=True)  # [1,F,1,P]
    return features[0, :, 0].transpose(0, 1)  # [P, F]


def head(width: int, out: int) -> torch.nn.Sequential:
    """One output head, Linear-ReLU-Linear, whose zero last layer makes its output 0 at init."""
    last = torch.nn.Linear(width, out)
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    return torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.ReLU(), last)


# configs/dynamic/deformation/hexplane.yaml (also the skeleton field's `residual`)
SETTINGS = {
    "resolution": ListOf(Integer(min=2), length=4),  # x, y, z, t cells: a plane needs 2 to interpolate
    "multires": ListOf(Integer(min=1), nonempty=True),
    "feature_dim": Integer(min=1),
    "width": Integer(min=1),
    "depth": Integer(min=1),
    "bounds": Nullable(Number(above=0)),
    "bounds_padding": Number(min=0),
}


@DEFORMATIONS.register("hexplane", schema=SETTINGS)
class HexPlaneDeformation(Deformation):
    """4DGaussians' hexplane field + MLP heads (Δposition, Δrotation, Δlog-scale).

    Reference settings: DG4D HEAD uses resolution [32, 32, 32, 12], multires [1],
    feature_dim 32, width 64, depth 1 and a fixed box of +-1.6; DG4D v1 (the paper's) and
    4DGaussians use resolution [64, 64, 64, 25] and multires [1, 2, 4, 8] (36M plane parameters).

    Args:
        means: [N, 3] canonical centres.
        bounds: half side of the fixed cube centred at the origin that is mapped to the
            planes' [-1, 1] (DG4D: 1.6); None fits the box to `means` instead, padded by
            `bounds_padding`. Either box is stored in buffers, so it survives checkpoints.
        resolution: [Rx, Ry, Rz, Rt] plane resolution at multires 1.
        multires: spatial resolution multipliers; time keeps Rt at every scale (4DGaussians).
        feature_dim: channels per plane; the field's feature is feature_dim * len(multires).
        width: MLP width.
        depth: number of Linear-ReLU layers before the heads (>= 1).
        bounds_padding: with `bounds` None, box padding on every side, as a fraction of its largest side.
    """

    def __init__(
        self,
        means: torch.Tensor,
        resolution: Sequence[int] = (32, 32, 32, 12),
        multires: Sequence[int] = (1,),
        feature_dim: int = 32,
        width: int = 64,
        depth: int = 1,
        bounds: float | None = 1.6,
        bounds_padding: float = 0.1,
    ):
        super().__init__()
        means = means.detach()
        if bounds is not None:
            # A fixed box: a floater far from the object cannot stretch it and coarsen the field.
            center, half = torch.zeros(3, device=means.device), torch.full((3,), float(bounds), device=means.device)
        else:
            low, high = means.min(dim=0).values, means.max(dim=0).values  # [3], [3]
            # Padding by the largest side keeps a flat or thin object from getting a degenerate box.
            center, half = 0.5 * (low + high), 0.5 * (high - low) + bounds_padding * (high - low).max()
        self.register_buffer("center", center)  # [3]
        self.register_buffer("half_size", half.clamp_min(1e-6))  # [3]

        self.multires = [int(m) for m in multires]
        self.planes = torch.nn.ParameterDict()
        for scale in self.multires:
            res = [int(r) * scale for r in resolution[:3]] + [int(resolution[3])]
            for a, b in PLANE_AXES:
                shape = (1, feature_dim, res[b], res[a])
                if b == 3:  # time plane: about 1 so that the product starts as the static spatial feature
                    plane = torch.empty(shape).uniform_(1 - TIME_PLANE_JITTER, 1 + TIME_PLANE_JITTER)
                else:
                    plane = torch.empty(shape).uniform_(0.1, 0.5)
                self.planes[self.plane_name(scale, a, b)] = torch.nn.Parameter(plane.to(means.device))

        layers = [torch.nn.Linear(feature_dim * len(self.multires), width), torch.nn.ReLU()]
        for _ in range(depth - 1):
            layers += [torch.nn.Linear(width, width), torch.nn.ReLU()]
        self.trunk = torch.nn.Sequential(*layers).to(means.device)
        self.position_head = head(width, 3).to(means.device)
        self.rotation_head = head(width, 4).to(means.device)
        self.scale_head = head(width, 3).to(means.device)

    def param_groups(self, lr: float) -> list[dict]:
        """The planes at GRID_LR_SCALE x `lr`, the MLPs at `lr` (DG4D: 6.4e-3 and 6.4e-4).

        The plane features are small (a product of three U(0.1, 0.5) values), so the
        planes must move fast for the time dependence to appear, while an MLP rate that
        high kills the heads' ReLUs within a few steps.
        """
        planes = list(self.planes.parameters())
        mlps = [p for key, p in self.named_parameters() if not key.startswith("planes.")]
        return [
            {"params": planes, "lr": GRID_LR_SCALE * lr, "name": "planes"},
            {"params": mlps, "lr": lr, "name": "mlp"},
        ]

    @staticmethod
    def plane_name(scale: int, a: int, b: int) -> str:
        return f"{scale}_{AXES[a]}{AXES[b]}"

    def features(self, means: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Hexplane features [B, N, feature_dim * len(multires)] at the points `means` [N, 3] and times `t` [B]."""
        xyz = (means - self.center) / self.half_size  # [N, 3] in [-1, 1] inside the box
        batch, n = t.shape[0], means.shape[0]
        # Time planes see every (point, time) pair; spatial planes only the points, shared by all times.
        xyzt = torch.cat([xyz.expand(batch, n, 3), t.to(xyz)[:, None, None].expand(batch, n, 1)], dim=-1)  # [B,N,4]
        xyzt = xyzt.reshape(batch * n, 4)
        per_scale = []
        for scale in self.multires:
            spatial = 1.0
            temporal = 1.0
            for a, b in PLANE_AXES:
                plane = self.planes[self.plane_name(scale, a, b)]
                if b == 3:
                    temporal = temporal * sample_plane(plane, xyzt[:, [a, b]])  # [B*N, F]
                else:
                    spatial = spatial * sample_plane(plane, xyz[:, [a, b]])  # [N, F]
            per_scale.append(spatial * temporal.reshape(batch, n, -1))  # [B, N, F]
        return torch.cat(per_scale, dim=-1)

    def forward(
        self, means: torch.Tensor, quats: torch.Tensor, log_scales: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden = self.trunk(self.features(means, t))  # [B, N, W]
        new_means = means + self.position_head(hidden)  # [B, N, 3]
        residual = unit_quats(self.rotation_head(hidden))  # [B, N, 4]
        new_quats = quat_multiply(residual, quats)  # [B, N, 4], unit because both factors are
        new_log_scales = log_scales + self.scale_head(hidden)  # [B, N, 3]
        return new_means, new_quats, new_log_scales

    def motion_points(self, means: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The deformed Gaussian centres [B, N, 3]: the hexplane has no coarser motion carrier."""
        return means + self.position_head(self.trunk(self.features(means, t)))

    def rest_points(self, means: torch.Tensor) -> torch.Tensor:
        return means

    def spatial_planes(self) -> list[torch.Tensor]:
        """The xy, xz and yz planes of every scale, [1, F, H, W] each."""
        return [self.planes[self.plane_name(s, a, b)] for s in self.multires for a, b in PLANE_AXES if b != 3]

    def time_planes(self) -> list[torch.Tensor]:
        """The xt, yt and zt planes of every scale, [1, F, Rt, W] each: time runs along dimension 2."""
        return [self.planes[self.plane_name(s, a, b)] for s in self.multires for a, b in PLANE_AXES if b == 3]
