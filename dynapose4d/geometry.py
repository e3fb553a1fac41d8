"""Quaternion (wxyz) helpers shared by the renderer, the models and the synthetic subject."""

import torch


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a * b of [..., 4] wxyz quaternions (apply b, then a)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


def quat_conjugate(q: torch.Tensor) -> torch.Tensor:
    """The conjugate of [..., 4] wxyz quaternions: the inverse rotation of a unit one."""
    return q * q.new_tensor([1.0, -1.0, -1.0, -1.0])


def unit_quats(residual: torch.Tensor) -> torch.Tensor:
    """Unit quaternions [..., 4] normalize(1 + residual): exactly the identity where the residual [..., 4] is 0
    (the deformation fields' rotations, which start at rest)."""
    return torch.nn.functional.normalize(residual.new_tensor([1.0, 0.0, 0.0, 0.0]) + residual, dim=-1)


def axis_angle_quat(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Quaternion [..., 4] of a rotation by `angle` (radians) about the unit `axis` [..., 3]."""
    half = 0.5 * angle[..., None]
    return torch.cat([torch.cos(half), torch.sin(half) * axis], dim=-1)


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [..., 3, 3] of unit quaternions [..., 4]."""
    w, x, y, z = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z),
        2 * (x * y - w * z),
        2 * (x * z + w * y),
        2 * (x * y + w * z),
        1 - 2 * (x * x + z * z),
        2 * (y * z - w * x),
        2 * (x * z - w * y),
        2 * (y * z + w * x),
        1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(*q.shape[:-1], 3, 3)
