"""EWA projection of 3D Gaussians to screen space, following gsplat's CUDA kernel.

Written with plain differentiable torch ops (autograd does the backward): it works on
[C, N] tensors, which is cheap next to the per-pixel compositing.
Reference: gsplat `ProjectionEWA3DGSFused.cu` and `persp_proj` in `Utils.cuh`.
"""

from dataclasses import dataclass

import torch

from ..geometry import quat_to_matrix

ALPHA_THRESHOLD = 1.0 / 255.0  # a Gaussian contributes to a pixel only above this alpha
MAX_EXTENT = 3.33  # gsplat's cap on the footprint radius in standard deviations


@dataclass
class Projection:
    """Screen-space Gaussians for C cameras; entries with `radii == 0` are culled."""

    means2d: torch.Tensor  # [C, N, 2] pixel coordinates (pixel centres at +0.5)
    conics: torch.Tensor  # [C, N, 3] inverse blurred 2D covariance (a, b, c)
    depths: torch.Tensor  # [C, N] camera-space z
    radii: torch.Tensor  # [C, N, 2] int32 half-extent of the footprint box in pixels
    opacities: torch.Tensor  # [C, N]


def quat_scale_to_covar(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """World covariance R S S^T R^T [N, 3, 3] from wxyz quaternions [N, 4] (any norm) and scales [N, 3]."""
    rotation = quat_to_matrix(torch.nn.functional.normalize(quats, dim=-1))  # [N, 3, 3]
    m = rotation * scales[:, None, :]  # R S
    return m @ m.transpose(1, 2)


def project_gaussians(
    means: torch.Tensor,  # [N, 3]
    quats: torch.Tensor,  # [N, 4] wxyz
    scales: torch.Tensor,  # [N, 3] activated
    opacities: torch.Tensor,  # [N] activated
    viewmats: torch.Tensor,  # [C, 4, 4] world-to-camera
    Ks: torch.Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    radius_clip: float = 0.0,
) -> Projection:
    """Project Gaussians with gsplat's pinhole EWA rules (classic mode, no compensation).

    The Jacobian is evaluated at the mean clamped to 1.3x the field of view (as gsplat
    does) so Gaussians far outside the image do not blow up; eps2d is the 0.3 px
    low-pass added to the 2D covariance. The footprint radius is opacity-aware: beyond
    sqrt(2 ln(255 o)) standard deviations the alpha is below 1/255 and never drawn.
    """
    rotation, translation = viewmats[:, :3, :3], viewmats[:, :3, 3]  # [C, 3, 3], [C, 3]
    means_c = torch.einsum("cij,nj->cni", rotation, means) + translation[:, None]  # [C, N, 3]
    x, y, z = means_c.unbind(-1)
    in_depth_range = (z >= near_plane) & (z <= far_plane)
    z = torch.where(in_depth_range, z, torch.ones_like(z))  # keeps culled entries finite

    covars_c = rotation[:, None] @ quat_scale_to_covar(quats, scales)[None] @ rotation[:, None].transpose(-1, -2)

    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # [C, 1]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    lim_x_pos = (width - cx) / fx + 0.3 * (0.5 * width / fx)
    lim_x_neg = cx / fx + 0.3 * (0.5 * width / fx)
    lim_y_pos = (height - cy) / fy + 0.3 * (0.5 * height / fy)
    lim_y_neg = cy / fy + 0.3 * (0.5 * height / fy)
    tx = z * torch.minimum(lim_x_pos, torch.maximum(-lim_x_neg, x / z))
    ty = z * torch.minimum(lim_y_pos, torch.maximum(-lim_y_neg, y / z))
    zeros = torch.zeros_like(z)
    jacobian = torch.stack([fx / z, zeros, -fx * tx / z**2, zeros, fy / z, -fy * ty / z**2], dim=-1).reshape(
        *z.shape, 2, 3
    )  # [C, N, 2, 3]
    covars2d = jacobian @ covars_c @ jacobian.transpose(-1, -2)  # [C, N, 2, 2]
    means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=-1)  # [C, N, 2]

    a = covars2d[..., 0, 0] + eps2d
    b = covars2d[..., 0, 1]
    c = covars2d[..., 1, 1] + eps2d
    det = a * c - b * b
    invertible = in_depth_range & (det > 0)
    safe_det = torch.where(invertible, det, torch.ones_like(det))
    conics = torch.stack([c / safe_det, -b / safe_det, a / safe_det], dim=-1)  # [C, N, 3]

    opacities = opacities.expand_as(z)
    with torch.no_grad():
        visible = invertible & (opacities >= ALPHA_THRESHOLD)
        extent = torch.sqrt(2.0 * torch.log(opacities.clamp_min(ALPHA_THRESHOLD) / ALPHA_THRESHOLD))
        extent = extent.clamp(max=MAX_EXTENT)
        radius_x = torch.ceil(extent * torch.sqrt(a.clamp_min(0)))
        radius_y = torch.ceil(extent * torch.sqrt(c.clamp_min(0)))
        visible &= (radius_x > radius_clip) | (radius_y > radius_clip)
        u, v = means2d[..., 0], means2d[..., 1]
        visible &= (u + radius_x > 0) & (u - radius_x < width) & (v + radius_y > 0) & (v - radius_y < height)
        radii = torch.stack([radius_x, radius_y], dim=-1).to(torch.int32) * visible[..., None]
    return Projection(means2d, conics, means_c[..., 2], radii, opacities)
