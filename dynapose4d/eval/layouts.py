"""Benchmark folder layouts: reading (with clear errors for a malformed layout) and writing.

Consistent4D ground truth: `eval_gt/<object>/eval_{0..3}/{0..31}.png`, RGBA. Renders of any
method are scored from the same layout (`pred/<object>/eval_{v}/{t}.png`), so the readers here
serve both. The eval cameras' poses are not published with the data (see the research notes):
the renderer takes them from config.

Animate124: `benchmark.json` (a list of {"name", "caption"}) next to `<name>/image.jpg`; renders
use the view/frame layout above under `pred/<name>/`, with any number of views and frames.
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.image import has_alpha
from ..errors import DynaPoseError
from ..media import to_uint8
from .frames import from_uint8

CONSISTENT4D_OBJECTS = ("aurorus", "crocodile", "guppie", "monster", "pistol", "skull", "trump")
CONSISTENT4D_VIEWS = 4
CONSISTENT4D_FRAMES = 32
# Azimuths (degrees, 0 = the input video's camera) of eval_0..eval_3, at the input's elevation and
# radius: "four distinct views at azimuth angles of -75°, 15°, 105°, and 195°, respectively" (the
# test data's readme.txt, quoted by the benchmark's author in yanqinJiang/Consistent4D issue #12).
CONSISTENT4D_AZIMUTHS = (-75.0, 15.0, 105.0, 195.0)


def load_frame(path: Path) -> torch.Tensor:
    """One frame [H, W, 3] in [0, 1] on the 8-bit grid; RGBA is composited on white the way
    DreamGaussian4D's add_bg_to_gt.py prepares the ground truth (rgb * a + 255 * (1 - a), rounded)."""
    image = Image.open(path)
    if has_alpha(image):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float64)
        alpha = rgba[..., 3:] / 255
        return from_uint8(np.round(rgba[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8))
    return from_uint8(np.asarray(image.convert("RGB")))


def _subdirectories(root: Path, what: str) -> list[str]:
    if not root.is_dir():
        raise DynaPoseError(f"{what} {root}: no such directory")
    names = sorted(entry.name for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if not names:
        raise DynaPoseError(f"{what} {root}: no object directories in it")
    return names


def consistent4d_objects(root: str | Path) -> list[str]:
    """Object names under a Consistent4D `eval_gt` (or renders) root, sorted."""
    return _subdirectories(Path(root), "Consistent4D root")


def load_consistent4d_views(root: str | Path, name: str) -> torch.Tensor:
    """One object's 4 eval views [V=4, T, H, W, 3] composited on white (ground truth or renders)."""
    return load_view_frames(Path(root) / name, views=CONSISTENT4D_VIEWS)


def load_view_frames(directory: str | Path, views: int | None = None) -> torch.Tensor:
    """Frames [V, T, H, W, 3] from `directory/eval_{v}/{t}.png`.

    `views=None` takes however many `eval_<v>` directories there are (numbered from 0). Every
    view must hold frames 0.png .. (T-1).png, the same T for all, all of one size.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DynaPoseError(f"{directory}: no such directory (expected <object>/eval_<view>/<frame>.png)")
    if views is None:
        views = len([entry for entry in directory.iterdir() if re.fullmatch(r"eval_\d+", entry.name)])
        if views == 0:
            raise DynaPoseError(f"{directory}: no view directories (expected eval_0, eval_1, ...)")
    missing = [f"eval_{view}" for view in range(views) if not (directory / f"eval_{view}").is_dir()]
    if missing:
        raise DynaPoseError(
            f"{directory}: missing view directories {', '.join(missing)} (expected eval_0 .. eval_{views - 1})"
        )
    paths = [_frame_paths(directory / f"eval_{view}") for view in range(views)]  # [V][T]
    if len({len(view) for view in paths}) > 1:
        per_view = ", ".join(f"eval_{view}: {len(frames)}" for view, frames in enumerate(paths))
        raise DynaPoseError(f"{directory}: views have different numbers of frames ({per_view})")
    frames = [[load_frame(path) for path in view] for view in paths]  # [V][T] tensors [H, W, 3]
    first = frames[0][0].shape
    for view_paths, view in zip(paths, frames):
        for path, frame in zip(view_paths, view):
            if frame.shape != first:
                raise DynaPoseError(
                    f"{directory}: frames of mixed sizes (eval_0/{paths[0][0].name} is {first[1]}x{first[0]}, "
                    f"{path.parent.name}/{path.name} is {frame.shape[1]}x{frame.shape[0]})"
                )
    return torch.stack([torch.stack(view) for view in frames])


def _frame_paths(view_dir: Path) -> list[Path]:
    """0.png .. (T-1).png of one view, in frame order (all of them, none missing)."""
    numbers = sorted(int(path.stem) for path in view_dir.glob("*.png") if path.stem.isdigit())
    if not numbers:
        raise DynaPoseError(f"{view_dir}: no frames (expected 0.png, 1.png, ...)")
    missing = sorted(set(range(numbers[-1] + 1)) - set(numbers))
    if missing:
        raise DynaPoseError(f"{view_dir}: missing frames {', '.join(f'{n}.png' for n in missing)}")
    return [view_dir / f"{number}.png" for number in numbers]


def save_view_frames(directory: str | Path, frames: torch.Tensor) -> None:
    """Write frames [V, T, H, W, 3] in [0, 1] as `directory/eval_{v}/{t}.png` (8-bit RGB)."""
    for view, video in enumerate(to_uint8(frames)):
        view_dir = Path(directory) / f"eval_{view}"
        view_dir.mkdir(parents=True, exist_ok=True)
        for index, frame in enumerate(video):
            Image.fromarray(frame).save(view_dir / f"{index}.png")


@dataclass(frozen=True)
class Animate124Case:
    name: str
    caption: str
    image: Path  # <root>/<name>/image.jpg, the input image


def animate124_cases(root: str | Path) -> list[Animate124Case]:
    """The image-caption pairs of an Animate124 benchmark folder, in benchmark.json's order."""
    root = Path(root)
    listing = root / "benchmark.json"
    if not listing.is_file():
        raise DynaPoseError(f"Animate124 root {root}: no benchmark.json (use the repo's benchmark/ folder)")
    try:
        entries = json.loads(listing.read_text())
        cases = [
            Animate124Case(entry["name"], entry["caption"], root / entry["name"] / "image.jpg") for entry in entries
        ]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise DynaPoseError(f"{listing}: expected a list of {{'name', 'caption'}} objects ({error!r})") from None
    missing = [case.name for case in cases if not case.image.is_file()]
    if missing:
        raise DynaPoseError(
            f"Animate124 root {root}: no <name>/image.jpg for {', '.join(missing)} "
            "(in the Animate124 repo some live outside benchmark/, e.g. data/astronaut-horse; copy them in)"
        )
    return cases


def load_animate124_image(case: Animate124Case) -> torch.Tensor:
    """The case's input image [H, W, 3] in [0, 1]."""
    return load_frame(case.image)
