"""Loading the input image as an RGBA reference: alpha is the object mask.

RGBA is straight alpha everywhere (colour not multiplied by alpha), as `composite` reads it;
resampling works on premultiplied colour, so the colour under transparent pixels (black in
a PNG cut-out) never bleeds into the object's edge.
"""

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DynaPoseError, first_line

log = logging.getLogger(__name__)
MIN_FOREGROUND_FRACTION = 1e-3  # below this the "object" is a few stray pixels
WHITE = torch.ones(3)  # what Zero123, SVD, PoseAnything and the benchmarks composite on
# rembg's default model when DreamGaussian4D called `rembg.new_session()`; named, because rembg's
# default has since become bria-rmbg, whose weights carry a non-commercial licence.
REMBG_MODEL = "u2net"
REMBG_MODEL_URL = "https://github.com/danielgatis/rembg/releases/download/v0.0.0/u2net.onnx"
MASK_FIX = "mask=path/to/mask.png (white = object)"
# Below this alpha a resampled pixel's colour is left 0: dividing by alpha there only magnifies rounding, and
# every use weighs that colour by alpha, so it cannot show by more than this.
ALPHA_EPSILON = 1e-6


def load_reference_image(
    path: str | Path, size: int, mask: str | Path | None = None, border_ratio: float | None = 0.2
) -> torch.Tensor:
    """The input image as a float RGBA reference [size, size, 4] in [0, 1]; alpha is the object mask.

    The mask is the `mask` file (white = object), or the image's alpha channel, or, for a
    plain RGB image or one whose alpha is opaque everywhere (a screenshot: no mask at all,
    said in a warning), rembg's cut-out (DreamGaussian's preprocessing). With a
    `border_ratio`, the object is recentred and scaled so its bounding box fills
    (1 - border_ratio) of the image (DreamGaussian's preprocessing); None keeps the framing.
    Raises DynaPoseError for a missing or unreadable file, no way to get a mask, or an
    empty mask.
    """
    image = open_image(path)
    problem = missing_mask(image)
    if mask is not None:
        alpha = open_image(mask).convert("L")
        if alpha.size != image.size:
            raise DynaPoseError(
                f"mask {mask} is {alpha.size[0]}x{alpha.size[1]} but the image is {image.size[0]}x{image.size[1]}"
            )
        rgba = with_mask(image, alpha)
    elif problem is None:
        rgba = image.convert("RGBA")
    else:
        if has_alpha(image):
            log.warning("%s %s: it is no mask, so rembg cuts the object out (or give %s)", path, problem, MASK_FIX)
        (rgba,) = cut_out([image], rembg_session_for(f"{path} {problem}", MASK_FIX))
    pixels = torch.from_numpy(np.asarray(rgba, dtype=np.float32) / 255.0)  # [H, W, 4]
    if (pixels[..., 3] > 0.5).float().mean() < MIN_FOREGROUND_FRACTION:
        raise DynaPoseError(f"{mask or path} has no foreground: the object mask is (almost) empty")
    if border_ratio is not None:
        return recenter(pixels, size, border_ratio)
    return torch.from_numpy(np.asarray(square_resize(rgba, size), dtype=np.float32) / 255.0)


def recenter(rgba: torch.Tensor, size: int, border_ratio: float) -> torch.Tensor:
    """Crop RGBA [..., H, W, 4] to its object, scale the longer side to (1 - border_ratio) * size, centre it.

    Frames (leading dimensions) share one crop, the bounding box of all their masks, so a
    clip keeps its motion. Float input is in [0, 1], uint8 in [0, 255]; the output is float.
    The scaling is premultiplied (see `resample_straight`).
    """
    scale_to_unit = 255.0 if rgba.dtype == torch.uint8 else 1.0
    frames = rgba.reshape(-1, *rgba.shape[-3:])  # [F, H, W, 4]
    union = (frames[..., 3].float() / scale_to_unit > 0.5).any(dim=0)  # [H, W]
    rows, cols = torch.nonzero(union, as_tuple=True)
    top, bottom, left, right = rows.min().item(), rows.max().item() + 1, cols.min().item(), cols.max().item() + 1
    scale = (1.0 - border_ratio) * size / max(bottom - top, right - left)
    height, width = max(round((bottom - top) * scale), 1), max(round((right - left) * scale), 1)
    canvas = torch.zeros(len(frames), size, size, 4)
    row, col = (size - height) // 2, (size - width) // 2

    def resample(pixels: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(
            pixels, size=(height, width), mode="bilinear", antialias=True, align_corners=False
        )

    for index, frame in enumerate(frames):  # one at a time: a long clip in float may not fit in memory
        crop = frame[top:bottom, left:right].float().permute(2, 0, 1)[None] / scale_to_unit  # [1, 4, h, w]
        resized = resample_straight(crop, resample)[0].permute(1, 2, 0)  # [height, width, 4]
        canvas[index, row : row + height, col : col + width] = resized.clamp(0, 1)
    return canvas.reshape(*rgba.shape[:-3], size, size, 4)


def square_resize(image: Image.Image, size: int) -> Image.Image:
    """Pad an RGBA image with transparent pixels to a centred square, then resize it.

    Pillow resizes RGBA premultiplied (through its RGBa mode), so the padding's black stays out of the edges.
    """
    side = max(image.size)
    canvas = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return canvas.resize((size, size), Image.Resampling.LANCZOS)


def has_alpha(image: Image.Image) -> bool:
    """Whether the image carries its own mask: an alpha channel, or a palette with a transparent colour."""
    return "A" in image.mode or "transparency" in image.info


def missing_mask(image: Image.Image) -> str | None:
    """Why the image carries no object mask of its own (completes "<path> ..."), or None when it does.

    An alpha channel that is opaque everywhere (a screenshot, a JPEG saved as PNG) marks no object.
    """
    if not has_alpha(image):
        return "has no alpha channel"
    if image.convert("RGBA").getchannel("A").getextrema()[0] == 255:
        return "has an alpha channel that is opaque everywhere"
    return None


def with_mask(image: Image.Image, mask: Image.Image) -> Image.Image:
    """RGBA: the image's colours with `mask` (white = object) as alpha."""
    rgba = image.convert("RGB")
    rgba.putalpha(mask.convert("L"))
    return rgba


def open_image(path: str | Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise DynaPoseError(f"input image not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (UnidentifiedImageError, OSError) as error:
        raise DynaPoseError(f"cannot read the input image {path}: {error}") from None


class RembgUnavailable(DynaPoseError):
    """rembg is not installed or cannot load its model; the message says which, and where the model goes."""


def rembg_session():
    """rembg's U²-Net session, loaded once and shared by every image it cuts out.

    rembg downloads the model into its model directory on first use. Offline that fails at
    once (no name resolution) or after pooch's 30 s timeout: it never hangs.
    """
    try:
        import rembg
        from rembg.sessions.u2net import U2netSession
    except ImportError:
        raise RembgUnavailable("rembg is not installed (pip install 'rembg[cpu]')") from None
    try:
        return rembg.new_session(REMBG_MODEL)
    except OSError:  # requests' download errors are OSErrors
        directory = U2netSession.model_dir()
        raise RembgUnavailable(
            f"rembg's model {REMBG_MODEL}.onnx is not in {directory} and could not be downloaded (offline?): "
            f"download {REMBG_MODEL_URL} into that directory"
        ) from None
    except Exception as error:  # onnxruntime's, from a damaged model file
        reason = first_line(error)
        model = Path(U2netSession.model_dir()) / f"{REMBG_MODEL}.onnx"
        raise RembgUnavailable(
            f"rembg cannot load its model {model} ({reason}): if it is a damaged download, delete it and rerun"
        ) from None


def rembg_session_for(problem: str, fixes: str):
    """`rembg_session()` for images without a mask; else a DynaPoseError: the problem, the fixes, why rembg failed."""
    try:
        return rembg_session()
    except RembgUnavailable as error:
        raise DynaPoseError(f"{problem}: give {fixes}; or let rembg cut the object out, but {error}") from None


def cut_out(images: list[Image.Image], session) -> list[Image.Image]:
    """Straight-alpha RGBA cut-outs of `images`: their colours, rembg's mask from one `session` as alpha.

    rembg's own cut-out (`naive_cutout`) composites the image over transparent black, so its
    colours come premultiplied by the mask; only its mask is taken. rembg predicts on the
    EXIF-upright image, so the colours are turned upright too, to fit the mask.
    """
    import rembg

    cut = []
    for image in images:
        upright = ImageOps.exif_transpose(image.convert("RGB"))
        upright.putalpha(rembg.remove(upright, session=session, only_mask=True))
        cut.append(upright)
    return cut


def composite(rgba: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """RGB [..., 3] of straight-alpha RGBA [..., 4] over a background colour [3]."""
    alpha = rgba[..., 3:]
    return rgba[..., :3] * alpha + background * (1 - alpha)


def resize_square(images: torch.Tensor, size: int) -> torch.Tensor:
    """Images [..., H, W, C] -> [..., size, size, C] (area averaging when shrinking).

    RGBA (C = 4) is resampled premultiplied (see `resample_straight`); RGB as it is.
    """
    if images.shape[-3] == size and images.shape[-2] == size:
        return images
    batch = images.reshape(-1, *images.shape[-3:]).permute(0, 3, 1, 2)  # [B, C, H, W]

    def resample(pixels: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(pixels, size=(size, size), mode="area")

    resized = resample_straight(batch, resample) if images.shape[-1] == 4 else resample(batch)
    return resized.permute(0, 2, 3, 1).reshape(*images.shape[:-3], size, size, images.shape[-1])


def resample_straight(rgba: torch.Tensor, resample) -> torch.Tensor:
    """Straight RGBA [B, 4, H, W] through `resample` (a linear filter of [B, C, H, W]), premultiplied.

    Resampling straight colour averages in the colour of transparent pixels (black in a PNG
    cut-out): a white object on white would get a dark rim. Weighted by alpha, they add nothing.
    The alpha is exactly what `resample` makes of it alone.
    """
    alpha = rgba[:, 3:]  # [B, 1, H, W]
    resized = resample(torch.cat([rgba[:, :3] * alpha, alpha], dim=1))  # [B, 4, h, w], colour premultiplied
    colour, alpha = resized[:, :3], resized[:, 3:]
    visible = alpha > ALPHA_EPSILON
    straight = torch.where(visible, colour / torch.where(visible, alpha, 1.0), 0.0)
    return torch.cat([straight.clamp(0, 1), alpha], dim=1)


def key_out_background(
    rgb: torch.Tensor, background: torch.Tensor, low: float = 0.04, high: float = 0.12
) -> torch.Tensor:
    """Alpha [..., H, W, 1] of frames [..., H, W, 3] shot on a known plain `background` [3].

    A pixel whose largest channel difference to the background is below `low` is background,
    above `high` object, with a linear ramp between (soft edges). It is the fallback mask for
    generated videos when rembg cannot load its model: SVD keeps the plain background of its input.
    """
    difference = (rgb - background.to(rgb)).abs().amax(dim=-1, keepdim=True)
    return ((difference - low) / (high - low)).clamp(0, 1)
