"""Brute-force references for the renderer tests, written independently of the package.

Everything here is dense over [C, N, H, W] and loops over Gaussians in depth order, the
way the CUDA kernel reads: simple enough to check by eye, too slow for anything but tests.
"""

import torch


def quat_to_matrix(quat: torch.Tensor) -> torch.Tensor:
    """Rotation matrix [3, 3] of one wxyz quaternion (normalised here)."""
    w, x, y, z = (quat / quat.norm()).tolist()
    return torch.tensor(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ],
        dtype=quat.dtype,
    )


def dense_render(means, quats, scales, opacities, colors, viewmat, K, width, height, eps2d=0.3, near=0.01):
    """Render one camera by visiting every Gaussian at every pixel, front to back.

    Differentiable through plain torch ops (per-Gaussian Python loop, dense pixel grid).
    Returns colour [H, W, D] and alpha [H, W, 1] without background.
    """
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    rows, cols = torch.meshgrid(
        torch.arange(height, dtype=means.dtype) + 0.5, torch.arange(width, dtype=means.dtype) + 0.5, indexing="ij"
    )
    cam = means @ viewmat[:3, :3].T + viewmat[:3, 3]  # [N, 3]
    transmittance = torch.ones(height, width, dtype=means.dtype)
    done = torch.zeros(height, width, dtype=torch.bool)
    out = torch.zeros(height, width, colors.shape[-1], dtype=means.dtype)
    for i in torch.argsort(cam[:, 2].detach()).tolist():
        x, y, z = cam[i]
        if z < near:
            continue
        rotation = _quat_matrix_differentiable(quats[i])
        cov = rotation @ torch.diag(scales[i] ** 2) @ rotation.T
        cov_cam = viewmat[:3, :3] @ cov @ viewmat[:3, :3].T
        lim_x, lim_y = 1.3 * (0.5 * width / fx), 1.3 * (0.5 * height / fy)
        tx = z * torch.clamp(x / z, -lim_x, lim_x)
        ty = z * torch.clamp(y / z, -lim_y, lim_y)
        jac = torch.stack(
            [torch.stack([fx / z, 0 * z, -fx * tx / z**2]), torch.stack([0 * z, fy / z, -fy * ty / z**2])]
        )
        cov2d = jac @ cov_cam @ jac.T + eps2d * torch.eye(2, dtype=means.dtype)
        if torch.det(cov2d) <= 0:
            continue
        conic = torch.linalg.inv(cov2d)
        dx = fx * x / z + cx - cols
        dy = fy * y / z + cy - rows
        sigma = 0.5 * (conic[0, 0] * dx**2 + conic[1, 1] * dy**2) + conic[0, 1] * dx * dy
        alpha = torch.clamp(opacities[i] * torch.exp(-sigma), max=0.999)
        usable = (alpha >= 1 / 255) & ~done
        next_t = transmittance * (1 - alpha)
        stop = usable & (next_t <= 1e-4)
        done = done | stop
        usable = usable & ~stop
        weight = torch.where(usable, alpha * transmittance, torch.zeros_like(alpha))
        out = out + weight[..., None] * colors[i]
        transmittance = torch.where(usable, next_t, transmittance)
    return out, (1 - transmittance)[..., None]


def _quat_matrix_differentiable(quat):
    w, x, y, z = quat / quat.norm()
    return torch.stack(
        [
            torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)]),
            torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)]),
            torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]),
        ]
    )
