"""Images and videos on disk: PNG I/O, mp4 writing, image grids, atomic writes.

Inside the package images are float tensors in [0, 1], channels last ([H, W, 3] RGB
or [H, W, 4] RGBA); they become uint8 only here, at the file boundary. imageio is
imported inside the functions that need it so `import dynapose4d.media` stays cheap.
"""

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one step.

    Readers never see half a file, and an interrupted run leaves the old file intact.
    The temporary name keeps the extension because writers such as ffmpeg pick the
    container from it.
    """
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(name)
    tmp = os.path.join(directory, f".{stem}.tmp-{os.getpid()}{ext}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def to_uint8(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """Float image(s) in [0, 1] (any shape) -> uint8 numpy array, clamped and rounded."""
    image = torch.as_tensor(image).detach().float().cpu()
    return (image.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).numpy()


def save_png(path: str | os.PathLike, image: torch.Tensor | np.ndarray) -> None:
    """Write an [H, W, 3] RGB or [H, W, 4] RGBA float image as an 8-bit PNG, atomically."""
    import imageio.v3 as iio

    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise ValueError(f"expected an [H, W, 3|4] image, got shape {tuple(image.shape)}")
    with atomic_output(path) as tmp:
        iio.imwrite(tmp, to_uint8(image), extension=".png")


def load_png(path: str | os.PathLike) -> torch.Tensor:
    """Read an image file as a float tensor [H, W, C] in [0, 1] (C = 1 for grey); a 16-bit PNG keeps its 16 bits."""
    if png_bit_depth(path) == 16:
        array = read_16_bit_png(path)
    else:
        import imageio.v3 as iio

        array = iio.imread(path)  # [H, W] or [H, W, C], uint8
    scale = float(np.iinfo(array.dtype).max)
    image = torch.from_numpy(array.astype(np.float32) / scale)
    return image[..., None] if image.ndim == 2 else image


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_bit_depth(path: str | os.PathLike) -> int | None:
    """The bits per channel a PNG's header (IHDR) declares, or None for a file that is not a PNG."""
    with open(path, "rb") as file:
        header = file.read(26)  # signature, IHDR length and type, width, height, bit depth, colour type
    return header[24] if header[:8] == PNG_SIGNATURE and header[12:16] == b"IHDR" else None


def read_16_bit_png(path: str | os.PathLike) -> np.ndarray:
    """A 16-bit PNG as uint16 [H, W] or [H, W, C] RGB(A): Pillow, under imageio, truncates these to 8 bits."""
    import cv2

    array = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)  # BGR(A) channel order
    if array is None:
        raise ValueError(f"{path} is not a PNG that OpenCV can read")
    if array.ndim == 3:
        array = array[..., [2, 1, 0, 3][: array.shape[-1]]]
    return array


def save_png_frames(directory: str | os.PathLike, frames: torch.Tensor) -> None:
    """Frames [T, H, W, 3|4] as directory/000.png, 001.png, ..."""
    os.makedirs(directory, exist_ok=True)
    for index, frame in enumerate(frames):
        save_png(os.path.join(directory, f"{index:03d}.png"), frame)


def load_png_frames(directory: str | os.PathLike) -> torch.Tensor:
    """The frames [T, H, W, C] that `save_png_frames` wrote, in order (an empty tensor when there are none)."""
    paths = sorted(Path(directory).glob("*.png"))
    return torch.stack([load_png(path) for path in paths]) if paths else torch.empty(0)


def write_video(path: str | os.PathLike, frames: torch.Tensor | np.ndarray, fps: float = 24.0, crf: int = 18) -> None:
    """Write frames [T, H, W, 3] (float in [0, 1]) as an mp4 that browsers play.

    H.264 (libx264) in yuv420p, whose 2x2 chroma blocks need even sizes: odd frames are
    padded by repeating their last row/column rather than resized, so pixels stay put.
    `crf` is x264's quality (lower is better, 18 looks lossless). The moov atom goes
    first (`+faststart`) so a browser can start playing before the download ends.
    """
    import imageio_ffmpeg

    frames = to_uint8(frames)  # [T, H, W, 3]
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"expected frames [T, H, W, 3] with T > 0, got shape {frames.shape}")
    height, width = frames.shape[1:3]
    frames = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    with atomic_output(path) as tmp:
        writer = imageio_ffmpeg.write_frames(
            tmp,
            size=(frames.shape[2], frames.shape[1]),
            fps=fps,
            codec="libx264",
            pix_fmt_out="yuv420p",
            quality=None,  # quality is set by -crf below
            macro_block_size=1,  # already even; stops imageio from rescaling
            ffmpeg_log_level="error",
            output_params=["-crf", str(crf), "-movflags", "+faststart"],
        )
        writer.send(None)  # starts ffmpeg
        try:
            for frame in frames:
                writer.send(np.ascontiguousarray(frame))
        finally:
            writer.close()  # waits for ffmpeg to finish the file


def image_grid(images: torch.Tensor, columns: int, fill: float = 0.0) -> torch.Tensor:
    """Tile images [B, H, W, C] row-major into one image [rows * H, columns * W, C].

    Image b lands in row b // columns, column b % columns; empty cells get `fill`.
    """
    count, height, width, channels = images.shape
    rows = math.ceil(count / columns)
    padding = images.new_full((rows * columns - count, height, width, channels), fill)
    cells = torch.cat([images, padding]).reshape(rows, columns, height, width, channels)
    # [rows, H, columns, W, C]: each grid row is its images side by side
    return cells.permute(0, 2, 1, 3, 4).reshape(rows * height, columns * width, channels)
