"""Tile intersection: which Gaussians touch which screen tiles, front to back.

The pure-torch compositor works on (Gaussian, tile) pairs, so its cost grows with the
pixels each Gaussian covers, never with N x H x W.
"""

from dataclasses import dataclass

import torch


@dataclass
class TilePairs:
    """Every (camera, tile, Gaussian) overlap, sorted by tile then by camera depth."""

    tile_ids: torch.Tensor  # [P] flat tile index over all cameras: camera * tiles_per_image + tile
    gaussian_ids: torch.Tensor  # [P] index into the N Gaussians
    camera_ids: torch.Tensor  # [P]
    segment_starts: torch.Tensor  # [P] index of the first pair of this pair's tile
    segment_ends: torch.Tensor  # [P] index of the last pair of this pair's tile
    tiles_x: int
    tiles_y: int
    tile_size: int


def intersect_tiles(
    means2d: torch.Tensor,  # [C, N, 2]
    radii: torch.Tensor,  # [C, N, 2] int, 0 = culled
    depths: torch.Tensor,  # [C, N]
    width: int,
    height: int,
    tile_size: int,
) -> TilePairs:
    """List the tiles each visible Gaussian's footprint box overlaps (no gradients)."""
    device = means2d.device
    tiles_x = -(-width // tile_size)
    tiles_y = -(-height // tile_size)
    with torch.no_grad():
        camera_ids, gaussian_ids = torch.nonzero(radii[..., 0] > 0, as_tuple=True)  # [V]
        # Sorting visible Gaussians by depth first lets a stable sort by tile keep depth order.
        order = torch.argsort(depths[camera_ids, gaussian_ids], stable=True)
        camera_ids, gaussian_ids = camera_ids[order], gaussian_ids[order]
        centre = means2d[camera_ids, gaussian_ids].detach()  # [V, 2]
        radius = radii[camera_ids, gaussian_ids].to(centre.dtype)  # [V, 2]
        upper = torch.tensor([tiles_x, tiles_y], device=device)
        tile_min = torch.floor((centre - radius) / tile_size).long().clamp(min=0).minimum(upper)
        tile_max = torch.ceil((centre + radius) / tile_size).long().clamp(min=0).minimum(upper)
        extent = (tile_max - tile_min).clamp(min=0)  # [V, 2] tiles covered along x and y
        counts = extent[:, 0] * extent[:, 1]  # [V]

        owner = torch.repeat_interleave(torch.arange(len(counts), device=device), counts)  # [P]
        first = torch.cumsum(counts, 0) - counts
        local = torch.arange(len(owner), device=device) - first[owner]  # index inside the box
        width_in_tiles = extent[owner, 0]
        tile_x = tile_min[owner, 0] + local % width_in_tiles
        tile_y = tile_min[owner, 1] + local // width_in_tiles
        tile_ids = camera_ids[owner] * (tiles_x * tiles_y) + tile_y * tiles_x + tile_x

        tile_ids, order = torch.sort(tile_ids, stable=True)
        owner = owner[order]
        starts, ends = _segment_bounds(tile_ids)
    return TilePairs(tile_ids, gaussian_ids[owner], camera_ids[owner], starts, ends, tiles_x, tiles_y, tile_size)


def _segment_bounds(sorted_keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each position of a sorted key array, the first and last index of its run of equal keys."""
    count = len(sorted_keys)
    if count == 0:
        empty = sorted_keys.new_zeros(0)
        return empty, empty
    positions = torch.arange(count, device=sorted_keys.device)
    is_start = torch.ones(count, dtype=torch.bool, device=sorted_keys.device)
    is_start[1:] = sorted_keys[1:] != sorted_keys[:-1]
    run = torch.cumsum(is_start, 0) - 1  # [P] run index of each position
    run_starts = positions[is_start]
    run_ends = torch.cat([run_starts[1:] - 1, positions.new_tensor([count - 1])])
    return run_starts[run], run_ends[run]
