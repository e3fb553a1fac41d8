"""Front-to-back alpha compositing of (Gaussian, tile) pairs, with a hand-written backward.

Every pair owns one tile of S x S pixels. Inside the tile, a Gaussian's exponent is a
quadratic in the pixel offset (u, v) from the tile centre:

    sigma(u, v) = q0 + q1 u + q2 v + q3 u^2 + q4 v^2 + q5 u v

so the whole [P, S*S] exponent block is one matmul `q @ basis`, and the gradient with
respect to q is another. Pairs are sorted by tile then depth, so each tile's pairs form a
contiguous segment; transmittance is a segmented cumulative sum of log(1 - alpha)
(float64, because the running sum spans all segments). gsplat's early stop (a pixel is
done once T would fall to 1e-4, exclusive) is the prefix where the inclusive
transmittance is still above 1e-4, because transmittance only decreases.

Autograd through this would store ~20 [P, S*S] intermediates; the closed-form backward
below needs four and runs in about the same time as the forward.
"""

import math

import torch

from .projection import ALPHA_THRESHOLD

MAX_ALPHA = 0.999
LOG_MIN_TRANSMITTANCE = math.log(1e-4)


def quadratic_basis(tile_size: int, device=None) -> torch.Tensor:
    """[6, S*S] monomials (1, u, v, u^2, v^2, uv) of pixel-centre offsets from the tile centre."""
    offsets = torch.arange(tile_size, dtype=torch.float32, device=device) + 0.5 - tile_size / 2
    v, u = torch.meshgrid(offsets, offsets, indexing="ij")  # row-major pixels: v = row, u = column
    u, v = u.reshape(-1), v.reshape(-1)
    return torch.stack([torch.ones_like(u), u, v, u * u, v * v, u * v])


def exponent_coefficients(
    means2d: torch.Tensor,  # [P, 2] pixel coordinates relative to the tile centre
    conics: torch.Tensor,  # [P, 3] (a, b, c) of the inverse covariance
) -> torch.Tensor:
    """Coefficients q [P, 6] of 0.5 (a dx^2 + c dy^2) + b dx dy with dx = m - u, dy = n - v."""
    m, n = means2d.unbind(-1)
    a, b, c = conics.unbind(-1)
    constant = 0.5 * (a * m * m + c * n * n) + b * m * n
    return torch.stack([constant, -(a * m + b * n), -(c * n + b * m), 0.5 * a, 0.5 * c, b], dim=-1)


class CompositeTiles(torch.autograd.Function):
    """Composite sorted pairs into tiles: returns colours [tiles, S*S, D] and alpha [tiles, S*S]."""

    @staticmethod
    def forward(ctx, coefficients, opacities, colors, basis, tile_ids, segment_starts, segment_ends, num_tiles):
        # coefficients [P, 6], opacities [P], colors [P, D], basis [6, S*S], ids [P]
        sigma = coefficients @ basis  # [P, S*S]
        alpha_raw = opacities[:, None] * torch.exp(-sigma)
        # Conics are positive definite (the projection culls det <= 0), so sigma >= 0 up to
        # rounding and gsplat's `sigma < 0` skip never triggers; the alpha rules are exact.
        alpha = torch.where(alpha_raw >= ALPHA_THRESHOLD, alpha_raw.clamp(max=MAX_ALPHA), 0.0)
        log_one_minus = torch.log1p(-alpha)  # [P, S*S]
        inclusive = torch.cumsum(log_one_minus.double(), dim=0)
        log_t_inclusive = inclusive - (inclusive[segment_starts] - log_one_minus[segment_starts])
        keep = log_t_inclusive > LOG_MIN_TRANSMITTANCE  # prefix of each pixel's list
        transmittance = torch.exp((log_t_inclusive - log_one_minus).float())  # exclusive T
        weights = torch.where(keep, alpha * transmittance, 0.0)  # [P, S*S]

        depth_dim = colors.shape[1]
        tile_colors = colors.new_zeros(num_tiles, basis.shape[1], depth_dim)
        tile_colors.index_add_(0, tile_ids, weights[:, :, None] * colors[:, None, :])
        log_t_final = colors.new_zeros(num_tiles, basis.shape[1])
        log_t_final.index_add_(0, tile_ids, torch.where(keep, log_one_minus, 0.0))
        t_final = torch.exp(log_t_final)  # [tiles, S*S]

        ctx.save_for_backward(
            alpha_raw, alpha, transmittance, keep, weights, colors, opacities, basis, tile_ids, segment_ends, t_final
        )
        return tile_colors, 1.0 - t_final

    @staticmethod
    def backward(ctx, grad_colors, grad_alpha):
        (alpha_raw, alpha, transmittance, keep, weights, colors, opacities, basis,
         tile_ids, segment_ends, t_final) = ctx.saved_tensors  # fmt: skip
        grad_pair = grad_colors[tile_ids]  # [P, S*S, D]
        grad_pair_colors = torch.einsum("pt,ptd->pd", weights, grad_pair)  # [P, D]
        color_dot_grad = torch.einsum("ptd,pd->pt", grad_pair, colors)  # [P, S*S]

        # Light from everything behind pair i in its pixel: sum_{j > i} c_j w_j.
        behind = weights * color_dot_grad
        behind_cumulative = torch.cumsum(behind.double(), dim=0)
        behind = (behind_cumulative[segment_ends] - behind_cumulative).float()
        # d(colour)/d(alpha_i) = T_i c_i - behind_i / (1 - alpha_i)
        # d(1 - T_final)/d(alpha_i) = T_final / (1 - alpha_i)
        tail = grad_alpha[tile_ids] * t_final[tile_ids] - behind
        grad_alpha_pair = transmittance * color_dot_grad + tail / (1.0 - alpha)
        # Clamped or sub-threshold alphas, and pixels past the early stop, pass no gradient.
        passes = keep & (alpha_raw <= MAX_ALPHA) & (alpha > 0)
        grad_alpha_raw = torch.where(passes, grad_alpha_pair, 0.0)
        grad_opacities = (grad_alpha_raw * alpha_raw).sum(1) / opacities  # alpha_raw = o exp(-sigma)
        grad_sigma = -grad_alpha_raw * alpha_raw
        grad_coefficients = grad_sigma @ basis.T  # [P, 6]
        return grad_coefficients, grad_opacities, grad_pair_colors, None, None, None, None, None
