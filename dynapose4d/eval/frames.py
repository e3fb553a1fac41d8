"""Frames as the benchmark scripts see them: 8-bit RGB read from PNG, resized with PIL bicubic.

Every metric works on the 8-bit grid, so scoring a float render gives the same numbers as saving
it as PNG and scoring the file (which is what the official scripts do).
"""

import numpy as np
import torch
from PIL import Image

from ..media import to_uint8


def from_uint8(pixels: np.ndarray) -> torch.Tensor:
    """uint8 array [..., 3] -> floats in [0, 1]."""
    return torch.tensor(pixels, dtype=torch.float32) / 255  # a copy: PIL's arrays are read-only


def resize_frames(images: torch.Tensor, size: int) -> torch.Tensor:
    """Frames [..., H, W, 3] -> [..., size, size, 3] on the 8-bit grid.

    PIL bicubic on 8-bit RGB: the default of `Image.resize` that compute_image_level_metrics.py
    uses (`image.resize((512, 512))`). PIL returns a same-size request unchanged.
    """
    pixels = to_uint8(images)
    flat = pixels.reshape(-1, *pixels.shape[-3:])  # [B, H, W, 3]
    resized = [np.asarray(Image.fromarray(frame).resize((size, size), Image.Resampling.BICUBIC)) for frame in flat]
    return from_uint8(np.stack(resized).reshape(*pixels.shape[:-3], size, size, 3))
