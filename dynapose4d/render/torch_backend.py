"""Pure-PyTorch differentiable Gaussian rasteriser (CPU and CUDA), gsplat semantics."""

import torch

from .composite import CompositeTiles, exponent_coefficients, quadratic_basis
from .projection import project_gaussians
from .tiles import intersect_tiles

DEFAULT_TILE_SIZE = 4


def rasterize_torch(
    means: torch.Tensor,  # [N, 3]
    quats: torch.Tensor,  # [N, 4] wxyz
    scales: torch.Tensor,  # [N, 3]
    opacities: torch.Tensor,  # [N]
    colors: torch.Tensor,  # [N, D] or [C, N, D]
    viewmats: torch.Tensor,  # [C, 4, 4]
    Ks: torch.Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    backgrounds: torch.Tensor | None = None,  # [C, D]
    render_mode: str = "RGB",
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    radius_clip: float = 0.0,
    tile_size: int = DEFAULT_TILE_SIZE,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Render C views; see `dynapose4d.render.rasterize` for the contract."""
    num_cameras, num_gaussians = viewmats.shape[0], means.shape[0]
    projection = project_gaussians(
        means, quats, scales, opacities, viewmats, Ks, width, height, near_plane, far_plane, eps2d, radius_clip
    )
    if colors.dim() == 2:
        colors = colors.expand(num_cameras, *colors.shape)  # [C, N, D]
    if render_mode == "RGB+ED":
        colors = torch.cat([colors, projection.depths[..., None]], dim=-1)

    pairs = intersect_tiles(projection.means2d, projection.radii, projection.depths, width, height, tile_size)
    flat = pairs.camera_ids * num_gaussians + pairs.gaussian_ids  # [P] index into C*N
    tile_in_image = pairs.tile_ids % (pairs.tiles_x * pairs.tiles_y)
    tile_centre = (
        torch.stack([tile_in_image % pairs.tiles_x, tile_in_image // pairs.tiles_x], dim=-1).to(means.dtype) * tile_size
        + tile_size / 2
    )  # [P, 2]
    coefficients = exponent_coefficients(
        projection.means2d.reshape(-1, 2)[flat] - tile_centre,
        projection.conics.reshape(-1, 3)[flat],
    )
    num_tiles = num_cameras * pairs.tiles_y * pairs.tiles_x
    tile_colors, tile_alphas = CompositeTiles.apply(
        coefficients,
        projection.opacities.reshape(-1)[flat],
        colors.reshape(num_cameras * num_gaussians, colors.shape[-1])[flat],
        quadratic_basis(tile_size, means.device),
        pairs.groups,
        num_tiles,
    )
    render_colors = _tiles_to_image(tile_colors, num_cameras, pairs.tiles_y, pairs.tiles_x, tile_size, height, width)
    render_alphas = _tiles_to_image(
        tile_alphas[..., None], num_cameras, pairs.tiles_y, pairs.tiles_x, tile_size, height, width
    )

    if render_mode == "RGB+ED":
        rgb, depth = render_colors[..., :-1], render_colors[..., -1:]
        render_colors = torch.cat([rgb, depth / render_alphas.clamp_min(1e-10)], dim=-1)
    if backgrounds is not None:
        num_bg = backgrounds.shape[-1]
        background_part = (1.0 - render_alphas) * backgrounds[:, None, None, :]
        render_colors = torch.cat([render_colors[..., :num_bg] + background_part, render_colors[..., num_bg:]], dim=-1)
    meta = {
        "means2d": projection.means2d,
        "radii": projection.radii,
        "depths": projection.depths,
        "conics": projection.conics,
        "opacities": projection.opacities,
        "width": width,
        "height": height,
        "n_cameras": num_cameras,
        "gaussian_ids": None,
        "tile_size": tile_size,
        "num_pairs": len(flat),
    }
    return render_colors, render_alphas, meta


def _tiles_to_image(tiles, num_cameras, tiles_y, tiles_x, tile_size, height, width):
    """[C*ty*tx, S*S, D] tile-major blocks -> [C, H, W, D] image, cropped to the image size."""
    channels = tiles.shape[-1]
    image = tiles.reshape(num_cameras, tiles_y, tiles_x, tile_size, tile_size, channels)
    image = image.permute(0, 1, 3, 2, 4, 5).reshape(num_cameras, tiles_y * tile_size, tiles_x * tile_size, channels)
    return image[:, :height, :width]
