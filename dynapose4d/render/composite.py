"""Front-to-back alpha compositing of (Gaussian, tile) pairs, with a hand-written backward.

Every pair owns one tile of S x S pixels. Inside the tile, a Gaussian's exponent is a
quadratic in the pixel offset (u, v) from the tile centre:

    sigma(u, v) = q0 + q1 u + q2 v + q3 u^2 + q4 v^2 + q5 u v

so a whole block of exponents is one matmul `q @ basis`, and the gradient with respect
to q is another. Tiles are processed in groups (see `tiles.group_tiles`) as padded
[tiles, K, S*S] blocks whose K axis runs front to back: transmittance is a cumulative
product along K, and colours (and their gradients) are batched matmuls over K.
gsplat's early stop (a pixel is done once T would fall to 1e-4, exclusive) is the prefix
where the inclusive transmittance is still above 1e-4, because transmittance only falls.

Autograd through this would store ~20 intermediates per block; the closed-form backward
below keeps five and costs about as much as the forward.
"""

import torch

from .projection import ALPHA_THRESHOLD
from .tiles import TileGroup

MAX_ALPHA = 0.999
MIN_TRANSMITTANCE = 1e-4


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


def _composite_group(coefficients, opacities, colors, basis):
    """Forward for one padded block: q [S, K, 6], o [S, K], c [S, K, D] -> colours, alphas, saved."""
    sigma = coefficients @ basis  # [S, K, S*S]
    alpha_raw = opacities[..., None] * torch.exp(-sigma)
    # Conics are positive definite (the projection culls det <= 0), so sigma >= 0 up to
    # rounding and gsplat's `sigma < 0` skip never triggers; the alpha rules are exact.
    drawn = alpha_raw >= ALPHA_THRESHOLD
    one_minus_alpha = 1.0 - torch.where(drawn, alpha_raw.clamp(max=MAX_ALPHA), 0.0)
    t_inclusive = torch.cumprod(one_minus_alpha, dim=1)
    t_exclusive = torch.nn.functional.pad(t_inclusive[:, :-1], (0, 0, 1, 0), value=1.0)
    keep = t_inclusive > MIN_TRANSMITTANCE  # a prefix along K for every pixel
    weights = torch.where(keep, (1.0 - one_minus_alpha) * t_exclusive, 0.0)  # [S, K, S*S]
    tile_colors = weights.transpose(1, 2) @ colors  # [S, S*S, D]
    tile_alphas = weights.sum(1)  # sum of a_j T_j telescopes to 1 - prod(1 - a_j)
    # Clamped or sub-threshold alphas, and pixels past the early stop, pass no gradient.
    passes = keep & drawn & (alpha_raw <= MAX_ALPHA)
    return tile_colors, tile_alphas, (alpha_raw, one_minus_alpha, t_exclusive, passes, weights)


def _composite_group_backward(grad_colors, grad_alphas, coefficients, opacities, colors, basis, tile_alphas, saved):
    """Gradients for one block; grad_colors [S, S*S, D], grad_alphas [S, S*S]."""
    alpha_raw, one_minus_alpha, t_exclusive, passes, weights = saved
    grad_pair_colors = weights @ grad_colors  # [S, K, D]
    color_dot_grad = colors @ grad_colors.transpose(1, 2)  # [S, K, S*S]
    # d(colour)/d(alpha_i) = T_i c_i - behind_i / (1 - alpha_i), behind_i = sum_{j > i} c_j w_j
    # d(1 - T_final)/d(alpha_i) = T_final / (1 - alpha_i)
    # With behind_i = total - cumulative_i, the numerator is cumulative_i + (dA T_final - total).
    lit = weights * color_dot_grad
    per_pixel = (grad_alphas * (1.0 - tile_alphas))[:, None] - lit.sum(1, keepdim=True)  # [S, 1, S*S]
    tail = torch.cumsum(lit, dim=1) + per_pixel
    grad_alpha = t_exclusive * color_dot_grad + tail / one_minus_alpha
    # alpha_raw = o exp(-sigma): d/do = alpha_raw / o, d/dsigma = -alpha_raw.
    grad_alpha_raw = torch.where(passes, grad_alpha, 0.0) * alpha_raw
    grad_opacities = grad_alpha_raw.sum(-1) / opacities.clamp_min(1e-12)
    grad_coefficients = -(grad_alpha_raw @ basis.T)  # [S, K, 6]
    return grad_coefficients, grad_opacities, grad_pair_colors


class CompositeTiles(torch.autograd.Function):
    """Composite sorted pairs into tiles: returns colours [tiles, S*S, D] and alphas [tiles, S*S]."""

    @staticmethod
    def forward(ctx, coefficients, opacities, colors, basis, groups: list[TileGroup], num_tiles: int):
        # coefficients [P, 6], opacities [P], colors [P, D], basis [6, S*S]
        # Padding slots point at one extra dummy pair with opacity 0, which never draws.
        coefficients = torch.cat([coefficients, coefficients.new_zeros(1, 6)])
        opacities = torch.cat([opacities, opacities.new_zeros(1)])
        colors = torch.cat([colors, colors.new_zeros(1, colors.shape[1])])
        pixels = basis.shape[1]
        tile_colors = colors.new_zeros(num_tiles, pixels, colors.shape[1])
        tile_alphas = colors.new_zeros(num_tiles, pixels)
        ctx.blocks = []
        for group in groups:
            inputs = (coefficients[group.pair_index], opacities[group.pair_index], colors[group.pair_index])
            block_colors, block_alphas, saved = _composite_group(*inputs, basis)
            tile_colors[group.tiles] = block_colors
            tile_alphas[group.tiles] = block_alphas
            ctx.blocks.append((group, inputs, block_alphas, saved))
        ctx.save_for_backward(basis)
        ctx.num_pairs = len(coefficients) - 1
        return tile_colors, tile_alphas

    @staticmethod
    def backward(ctx, grad_colors, grad_alphas):
        (basis,) = ctx.saved_tensors
        count = ctx.num_pairs + 1  # with the dummy pair, whose gradient is dropped
        grad_coefficients = grad_colors.new_zeros(count, 6)
        grad_opacities = grad_colors.new_zeros(count)
        grad_pair_colors = grad_colors.new_zeros(count, grad_colors.shape[2])
        for group, inputs, block_alphas, saved in ctx.blocks:
            block_grads = _composite_group_backward(
                grad_colors[group.tiles], grad_alphas[group.tiles], *inputs, basis, block_alphas, saved
            )
            # Each real pair sits in exactly one slot, so plain assignment scatters it back.
            index = group.pair_index.reshape(-1)
            grad_coefficients[index] = block_grads[0].reshape(-1, 6)
            grad_opacities[index] = block_grads[1].reshape(-1)
            grad_pair_colors[index] = block_grads[2].reshape(len(index), -1)
        ctx.blocks = None  # free the saved blocks now rather than with the graph
        real = slice(0, ctx.num_pairs)
        return grad_coefficients[real], grad_opacities[real], grad_pair_colors[real], None, None, None
