"""Tile intersection: which Gaussians touch which screen tiles, front to back.

The pure-torch compositor works on (Gaussian, tile) pairs, so its cost grows with the
pixels each Gaussian covers, never with N x H x W.
"""

import math
from dataclasses import dataclass

import torch


@dataclass
class TileGroup:
    """Tiles with similar pair counts, padded to one [tiles, K] block of pair indices."""

    tiles: torch.Tensor  # [S] flat tile ids
    pair_index: torch.Tensor  # [S, K] front-to-back pair indices; padding points at index P (a dummy pair)


@dataclass
class TilePairs:
    """Every (camera, tile, Gaussian) overlap, sorted by tile then by camera depth."""

    tile_ids: torch.Tensor  # [P] flat tile index over all cameras: camera * tiles_per_image + tile
    gaussian_ids: torch.Tensor  # [P] index into the N Gaussians
    camera_ids: torch.Tensor  # [P]
    groups: list[TileGroup]
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
        groups = group_tiles(tile_ids)
    return TilePairs(tile_ids, gaussian_ids[owner], camera_ids[owner], groups, tiles_x, tiles_y, tile_size)


def group_tiles(sorted_tile_ids: torch.Tensor, max_padding: float = 1.5) -> list[TileGroup]:
    """Bucket non-empty tiles by pair count so that no bucket pads more than `max_padding` x.

    Object scenes have a few crowded tiles and many sparse ones; one block padded to
    the busiest tile would waste most of its work, while a bucket per power of
    `max_padding` keeps the padding bounded with a handful of buckets.
    """
    if len(sorted_tile_ids) == 0:
        return []
    tiles, counts = torch.unique_consecutive(sorted_tile_ids, return_counts=True)  # [S]
    starts = torch.cumsum(counts, 0) - counts
    level = torch.floor(torch.log(counts.double()) / math.log(max_padding)).long()
    groups = []
    for value in torch.unique(level).tolist():
        members = torch.nonzero(level == value)[:, 0]
        width = int(counts[members].max())
        offsets = torch.arange(width, device=sorted_tile_ids.device)
        pair_index = starts[members, None] + offsets  # [S_g, K]
        padding = offsets >= counts[members, None]
        groups.append(TileGroup(tiles[members], pair_index.masked_fill(padding, len(sorted_tile_ids))))
    return groups
