"""A user's video for video-to-4D: its frames as RGBA [F, size, size, 4], framed once for the whole clip.

The input is a directory of frames (Consistent4D's `0.png, 1.png, ...`, in numeric order)
or a video file. Each frame's mask is its alpha channel, the matching frame of `masks` (a
directory or video, white = object), or rembg's cut-out, as for the input image (also for
a frame whose alpha is opaque everywhere: that is no mask). The
object is recentred with one crop and scale for all frames, the bounding box of the masks'
union: recentring each frame on its own would undo the motion and make the object jump.
"""

import logging
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import DynaPoseError
from .image import (
    MIN_FOREGROUND_FRACTION,
    cut_out,
    has_alpha,
    missing_mask,
    open_image,
    recenter,
    rembg_session_for,
    square_resize,
    with_mask,
)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".gif"}
MASKS_FIX = "RGBA frames, or masks=path/to/masks (a directory or video of masks, white = object)"

log = logging.getLogger(__name__)


def load_video_frames(
    path: str | Path,
    size: int,
    border_ratio: float | None = 0.2,
    max_frames: int | None = None,
    masks: str | Path | None = None,
    frame_step: int = 1,
) -> torch.Tensor:
    """The clip at `path` as float RGBA frames [F, size, size, 4] in [0, 1]; alpha is the object mask.

    Every `frame_step`-th frame is kept, then the first `max_frames` of those (None: all).
    With a `border_ratio` the union of the masks is recentred so its bounding box fills
    (1 - border_ratio) of the frame; None pads each frame to a square and keeps its framing.
    Raises DynaPoseError for a missing or unreadable input, no frames, frames (or masks) of
    different sizes, non-image files among the frames, or a frame without foreground.
    """
    frames, names = read_frames(path, max_frames, frame_step)
    if masks is not None:
        mask_frames, _ = read_frames(masks, len(frames), frame_step)
        if len(mask_frames) != len(frames):
            raise DynaPoseError(f"masks {masks} has {len(mask_frames)} frames but {path} has {len(frames)}")
        if mask_frames[0].size != frames[0].size:
            (mask_width, mask_height), (width, height) = mask_frames[0].size, frames[0].size
            raise DynaPoseError(f"masks {masks} are {mask_width}x{mask_height} but the frames are {width}x{height}")
        rgba = [with_mask(frame, mask) for frame, mask in zip(frames, mask_frames)]
    else:
        rgba = _with_alpha(frames, path)
    pixels = torch.from_numpy(np.stack([np.asarray(frame) for frame in rgba]))  # [F, H, W, 4] uint8
    visible = pixels[..., 3] > 127  # [F, H, W], alpha > 0.5
    for name, frame_visible in zip(names, visible):
        if frame_visible.float().mean() < MIN_FOREGROUND_FRACTION:
            raise DynaPoseError(f"{name} has no foreground: the object mask is (almost) empty")
    if border_ratio is None:
        squares = np.stack([np.asarray(square_resize(frame, size), np.float32) for frame in rgba])
        return torch.from_numpy(squares / 255)
    return recenter(pixels, size, border_ratio)


def read_frames(path: str | Path, max_frames: int | None = None, frame_step: int = 1) -> tuple[list, list[str]]:
    """The frames (PIL images, one size) of a directory of images or a video file, with a name for each."""
    path = Path(path)
    if frame_step < 1:
        raise DynaPoseError(f"the frame step must be at least 1, got {frame_step}")
    if path.is_dir():
        files = frame_files(path)[::frame_step][:max_frames]
        frames, names = [open_image(file) for file in files], [str(file) for file in files]
    elif path.is_file():
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            suffixes = ", ".join(sorted(VIDEO_SUFFIXES))
            raise DynaPoseError(f"{path} is not a video: give a directory of frames or a video file ({suffixes})")
        frames = _decode_video(path, max_frames, frame_step)
        names = [f"frame {index * frame_step} of {path}" for index in range(len(frames))]
    else:
        raise DynaPoseError(f"input video not found: {path}")
    if not frames:
        raise DynaPoseError(f"{path} has no frames")
    for frame, name in zip(frames, names):
        if frame.size != frames[0].size:
            (width, height), (first_width, first_height) = frame.size, frames[0].size
            raise DynaPoseError(f"{name} is {width}x{height} but {names[0]} is {first_width}x{first_height}")
    return frames, names


def frame_files(directory: Path) -> list[Path]:
    """The image files of `directory` in natural order (2.png before 10.png; zero-padded names work too)."""
    files = [entry for entry in directory.iterdir() if entry.is_file() and not entry.name.startswith(".")]
    strays = sorted(file.name for file in files if file.suffix.lower() not in IMAGE_SUFFIXES)
    if strays:
        raise DynaPoseError(
            f"{directory} should hold only frame images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
            f"found {', '.join(strays[:3])}{' ...' if len(strays) > 3 else ''}"
        )
    return sorted(files, key=_natural_key)


def _natural_key(path: Path) -> list:
    # re.split with a group alternates text and digits, so the lists always compare str with str, int with int.
    return [int(part) if index % 2 else part.lower() for index, part in enumerate(re.split(r"(\d+)", path.name))]


def _decode_video(path: Path, max_frames: int | None, frame_step: int) -> list[Image.Image]:
    """Every `frame_step`-th RGB frame of a video file, read with ffmpeg, stopping after `max_frames`."""
    import imageio_ffmpeg

    frames = []
    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    try:
        width, height = next(reader)["size"]  # the first item is the stream's metadata
        for index, data in enumerate(reader):
            if max_frames is not None and len(frames) == max_frames:
                break
            if index % frame_step == 0:
                frames.append(Image.fromarray(np.frombuffer(data, np.uint8).reshape(height, width, 3)))
    except (OSError, RuntimeError, StopIteration, KeyError) as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else "ffmpeg found no video stream"
        raise DynaPoseError(f"cannot read the video {path}: {reason}") from None
    finally:
        reader.close()  # stops ffmpeg when we leave early
    return frames


def clip_without_masks(path: str | Path, max_frames: int | None = None, frame_step: int = 1) -> str | None:
    """Why rembg must cut the clip's frames out, with what to give instead (one line), or None.

    None too for a path that is no clip: reading it says what is wrong. A video file's
    frames never have alpha (they are decoded as RGB), so only a directory's are opened.
    """
    path = Path(path)
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        return f"the frames of {path} have no alpha channel; or give {MASKS_FIX}"
    if not path.is_dir():
        return None
    frames, names = read_frames(path, max_frames, frame_step)
    for frame, name in zip(frames, names):
        problem = missing_mask(frame)
        if problem is not None:
            return f"{name} {problem}; or give {MASKS_FIX}"
    return None


def _with_alpha(frames: list[Image.Image], path: Path) -> list[Image.Image]:
    """RGBA frames: their own alpha, else rembg's cut-out (its model loaded once, before the first frame)."""
    missing = [index for index, frame in enumerate(frames) if missing_mask(frame) is not None]
    rgba = [frame.convert("RGBA") for frame in frames]
    if missing:
        opaque = sum(has_alpha(frames[index]) for index in missing)
        if opaque:
            log.warning("%d frame(s) of %s have an alpha channel that is opaque everywhere: it is no mask, "
                        "so rembg cuts the object out (or give %s)", opaque, path, MASKS_FIX)  # fmt: skip
        session = rembg_session_for(f"{path} has frames without a mask of their own", MASKS_FIX)
        for index, frame in zip(missing, cut_out([frames[index] for index in missing], session)):
            rgba[index] = frame
    return rgba
