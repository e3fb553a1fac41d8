"""Real spherical harmonics colours (degrees 0-3), as gsplat evaluates them."""

import torch

C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
C3 = (
    -0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
    -0.4570457994644658, 1.445305721320277, -0.5900435899266435,
)  # fmt: skip


def sh_basis(directions: torch.Tensor, degree: int) -> torch.Tensor:
    """Basis values [..., (degree+1)^2] for unit directions [..., 3]."""
    x, y, z = directions.unbind(-1)
    basis = [torch.full_like(x, C0)]
    if degree >= 1:
        basis += [-C1 * y, C1 * z, -C1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        basis += [
            C2[0] * xy, C2[1] * yz, C2[2] * (2 * zz - xx - yy), C2[3] * xz, C2[4] * (xx - yy),
        ]  # fmt: skip
    if degree >= 3:
        basis += [
            C3[0] * y * (3 * xx - yy), C3[1] * xy * z, C3[2] * y * (4 * zz - xx - yy),
            C3[3] * z * (2 * zz - 3 * xx - 3 * yy), C3[4] * x * (4 * zz - xx - yy),
            C3[5] * z * (xx - yy), C3[6] * x * (xx - 3 * yy),
        ]  # fmt: skip
    return torch.stack(basis, dim=-1)


def sh_to_rgb(
    coefficients: torch.Tensor,  # [N, K, 3], K >= (degree+1)^2
    means: torch.Tensor,  # [N, 3]
    camera_positions: torch.Tensor,  # [C, 3]
    degree: int,
) -> torch.Tensor:
    """View-dependent colours [C, N, 3] = max(SH(mean - camera) + 0.5, 0)."""
    directions = torch.nn.functional.normalize(means[None] - camera_positions[:, None], dim=-1)  # [C, N, 3]
    basis = sh_basis(directions, degree)  # [C, N, K']
    num_terms = basis.shape[-1]
    return (torch.einsum("cnk,nkd->cnd", basis, coefficients[:, :num_terms]) + 0.5).clamp_min(0.0)
