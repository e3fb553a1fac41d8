"""The driving video and its keypoints on disk: what the video and keypoints stages write
and the dynamic stage reads, whatever produced them."""

import json
from pathlib import Path

import torch

from ..errors import DynaPoseError
from ..export import load_png, save_png, write_video
from .image import composite

MARKER_RADIUS = 2  # pixels, for the overlay video


def save_driving_frames(stage_dir: Path, frames: torch.Tensor, fps: float) -> None:
    """frames [T, H, W, 4] straight-alpha RGBA -> frames/NNN.png and driving.mp4 (on white)."""
    (stage_dir / "frames").mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        save_png(stage_dir / "frames" / f"{index:03d}.png", frame)
    write_video(stage_dir / "driving.mp4", _on_white(frames), fps=fps)


def load_driving_frames(run_dir: Path) -> torch.Tensor:
    """The driving video [T, H, W, 4] written by the video stage."""
    paths = sorted((run_dir / "video" / "frames").glob("*.png"))
    if not paths:
        raise DynaPoseError(f"no driving frames in {run_dir / 'video' / 'frames'}: run the video stage first")
    return torch.stack([load_png(path) for path in paths])


def save_keypoints(
    stage_dir: Path,
    support: torch.Tensor,  # [N, 2] on the input image
    keypoints: torch.Tensor,  # [T, N, 2] on the driving frames
    names: list[str],
    frames: torch.Tensor,  # [T, H, W, 4] for the overlay
    fps: float,
) -> None:
    """support.json, keypoints.json (pixel coordinates, x right, y down) and overlay.mp4."""
    stage_dir.mkdir(parents=True, exist_ok=True)
    size = list(frames.shape[1:3])
    (stage_dir / "support.json").write_text(
        json.dumps({"names": names, "image_size": size, "keypoints": support.tolist()})
    )
    (stage_dir / "keypoints.json").write_text(
        json.dumps({"names": names, "image_size": size, "keypoints": keypoints.tolist()})
    )
    write_video(stage_dir / "overlay.mp4", draw_keypoints(_on_white(frames), keypoints), fps=fps)


def load_keypoints(run_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(support [N, 2], per-frame keypoints [T, N, 2]) written by the keypoints stage."""
    directory = run_dir / "keypoints"
    if not (directory / "keypoints.json").exists():
        raise DynaPoseError(f"no keypoints in {directory}: run the keypoints stage first")
    support = json.loads((directory / "support.json").read_text())["keypoints"]
    keypoints = json.loads((directory / "keypoints.json").read_text())["keypoints"]
    return torch.tensor(support), torch.tensor(keypoints)


def draw_keypoints(frames: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
    """Red square markers at keypoints [T, N, 2] on RGB frames [T, H, W, 3]."""
    frames = frames.clone()
    height, width = frames.shape[1:3]
    for frame, points in zip(frames, keypoints):
        for x, y in points.floor().long().tolist():
            rows = slice(max(y - MARKER_RADIUS, 0), min(y + MARKER_RADIUS + 1, height))
            cols = slice(max(x - MARKER_RADIUS, 0), min(x + MARKER_RADIUS + 1, width))
            frame[rows, cols] = torch.tensor([1.0, 0.0, 0.0])
    return frames


def _on_white(frames: torch.Tensor) -> torch.Tensor:
    return composite(frames, torch.ones(3))  # [T, H, W, 3]
