"""Inputs for PoseAnything: the demo's pad-and-resize in true RGB, point mapping and support heatmaps.

Pixel coordinates are continuous (x, y), pixel (j, i) covering [j, j+1) x [i, i+1), as in
`dynapose4d.keypoints`. Padding and resizing (align_corners=False) then map points by a pure
offset and scale, the mapping of the official demo's `transform_keypoints_to_pad_and_resize`.

Every official config pairs its input side with 64x64 support heatmaps (`data_cfg.heatmap_size`), so
the heatmap stride depends on the variant: 256 / 64 = 4 for Small/Tiny, 224 / 64 = 3.5 for Base.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

NETWORK_SIZE = 256  # square model input of Small/Tiny (Base: 224, see CapeModel.input_size)
HEATMAP_SIZE = 64  # side of the support heatmaps of every variant (stride NETWORK_SIZE / 64 = 4, Base 3.5)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PadResize:
    """Where `resize_pad` put an image of `height` x `width` pixels in the square network frame."""

    height: int
    width: int
    pad_left: int
    pad_top: int
    size: int = NETWORK_SIZE

    @property
    def scale(self) -> float:
        """Network pixels per image pixel."""
        return self.size / max(self.height, self.width)

    def to_network(self, points: Tensor) -> Tensor:
        """Image pixels [..., 2] -> network pixels [..., 2] (divide by `size` for the model's [0, 1])."""
        return (points + points.new_tensor([self.pad_left, self.pad_top])) * self.scale

    def to_image(self, points: Tensor) -> Tensor:
        """Network pixels [..., 2] (the model's [0, 1] output times `size`) -> image pixels [..., 2]."""
        return points / self.scale - points.new_tensor([self.pad_left, self.pad_top])


def resize_pad(image: Tensor, size: int = NETWORK_SIZE) -> tuple[Tensor, PadResize]:
    """RGB `image` [3, H, W] or [B, 3, H, W] in [0, 1] -> (normalised [.., 3, size, size], its PadResize).

    As the demo's Resize_Pad: ImageNet normalisation, zero padding of the shorter side centred (so
    the border is the mean colour), then bilinear resizing. Differentiable with respect to the image.
    Deviations, all deliberate: channels are true RGB (the demo normalises BGR, then flips); the
    padded image is exactly square (the demo loses a pixel when the side difference is odd, and
    skips padding for near-square images, squashing them); resizing is antialiased.
    """
    batched = image.dim() == 4
    images = image if batched else image[None]  # [B, 3, H, W]
    height, width = images.shape[-2:]
    mean = images.new_tensor(IMAGENET_MEAN)[:, None, None]
    std = images.new_tensor(IMAGENET_STD)[:, None, None]
    normalised = (images - mean) / std
    side = max(height, width)
    pad_left, pad_top = (side - width) // 2, (side - height) // 2
    padded = F.pad(normalised, (pad_left, side - width - pad_left, pad_top, side - height - pad_top))
    resized = F.interpolate(padded, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return resized if batched else resized[0], PadResize(height, width, pad_left, pad_top, size)


def heatmap_centres(points: Tensor, size: int = NETWORK_SIZE, heatmap_size: int = HEATMAP_SIZE) -> Tensor:
    """Network pixels [..., 2] -> the heatmap cell (x, y) [..., 2] each support heatmap peaks on.

    The official target generator's `int(point / stride + 0.5)` with stride = image_size / heatmap_size:
    the nearest cell, halves rounded up, truncated toward zero as Python's int does (-0.9 -> cell 0).
    """
    stride = size / heatmap_size  # 4.0 or 3.5, exact in binary: a tie such as 12.25 / 3.5 = 3.5 stays a tie
    return torch.trunc(points / stride + 0.5)


def support_heatmaps(
    points: Tensor, visible: Tensor, sigma: float = 1.0, size: int = NETWORK_SIZE, heatmap_size: int = HEATMAP_SIZE
) -> tuple[Tensor, Tensor]:
    """MSRA target heatmaps of support keypoints, as the official demo builds them.

    Args:
        points: [..., K, 2] keypoints in network pixels (0..size).
        visible: [..., K] 0/1.
        size: the network input side (`CapeModel.input_size`: 256 Small/Tiny, 224 Base).
        heatmap_size: the heatmap side (`CapeModel.heatmap_size`: 64 for every variant).
    Returns:
        heatmaps [..., K, M, M], M = heatmap_size: an unnormalised Gaussian (peak 1) on `heatmap_centres`,
            cut to a (6 sigma + 1)-wide square window and to the map; zero if not kept.
        kept [..., K]: `visible`, zeroed where the whole window misses the map (the official weight).
            Pass it as the model's support visibility.
    """
    radius = int(3 * sigma)
    centre = heatmap_centres(points, size, heatmap_size)  # [..., K, 2]
    low, high = centre - radius, centre + radius + 1  # window [low, high) per axis
    outside = ((low >= heatmap_size) | (high < 0)).any(dim=-1)  # [..., K]
    kept = ((visible > 0.5) & ~outside).to(points.dtype)
    grid = torch.arange(heatmap_size, dtype=points.dtype, device=points.device)  # [M]
    dx = grid - centre[..., 0:1]  # [..., K, M]
    dy = grid - centre[..., 1:2]
    gauss_x = torch.exp(-(dx**2) / (2 * sigma**2)) * (dx.abs() <= radius)
    gauss_y = torch.exp(-(dy**2) / (2 * sigma**2)) * (dy.abs() <= radius)
    heatmaps = gauss_y[..., :, None] * gauss_x[..., None, :]  # [..., K, M, M] (row = y)
    return heatmaps * kept[..., None, None], kept
