"""Loading the input image as an RGBA reference: alpha is the object mask."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DynaPoseError

MIN_FOREGROUND_FRACTION = 1e-3  # below this the "object" is a few stray pixels


def load_reference_image(path: str | Path, size: int) -> torch.Tensor:
    """Read an RGBA image, pad it to a square and resize it: float RGBA [size, size, 4] in [0, 1].

    Raises DynaPoseError for a missing or unreadable file, an image without an alpha
    channel, or one whose alpha marks no foreground.
    """
    path = Path(path)
    if not path.is_file():
        raise DynaPoseError(f"input image not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()
            has_alpha = "A" in image.mode or "transparency" in image.info
            rgba = image.convert("RGBA")
    except (UnidentifiedImageError, OSError) as error:
        raise DynaPoseError(f"cannot read the input image {path}: {error}") from None
    if not has_alpha:
        raise DynaPoseError(
            f"{path} has no alpha channel: give an RGBA image whose alpha is the object mask "
            "(cut the object out first, e.g. with `rembg i input.png output.png`)"
        )
    pixels = torch.from_numpy(np.asarray(square_resize(rgba, size), dtype=np.float32) / 255.0)
    if (pixels[..., 3] > 0.5).float().mean() < MIN_FOREGROUND_FRACTION:
        raise DynaPoseError(f"{path} has no foreground: its alpha channel is (almost) empty")
    return pixels


def square_resize(image: Image.Image, size: int) -> Image.Image:
    """Pad an RGBA image with transparent pixels to a centred square, then resize it."""
    side = max(image.size)
    canvas = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return canvas.resize((size, size), Image.Resampling.LANCZOS)


def composite(rgba: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """RGB [..., 3] of straight-alpha RGBA [..., 4] over a background colour [3]."""
    alpha = rgba[..., 3:]
    return rgba[..., :3] * alpha + background * (1 - alpha)


def resize_square(images: torch.Tensor, size: int) -> torch.Tensor:
    """Images [..., H, W, C] -> [..., size, size, C] (area averaging when shrinking)."""
    if images.shape[-3] == size and images.shape[-2] == size:
        return images
    batch = images.reshape(-1, *images.shape[-3:]).permute(0, 3, 1, 2)  # [B, C, H, W]
    resized = torch.nn.functional.interpolate(batch, size=(size, size), mode="area").permute(0, 2, 3, 1)
    return resized.reshape(*images.shape[:-3], size, size, images.shape[-1])
