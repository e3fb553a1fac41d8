"""The driving video and its keypoints on disk: what the video and keypoints stages write
and the dynamic stage reads, whatever produced them."""

import json
from pathlib import Path

import torch

from ..errors import DynaPoseError
from ..media import load_png_frames, save_png_frames, to_uint8, write_video
from .image import WHITE, composite
from .support import SupportKeypoints, load_support, save_support

MARKER_RADIUS = 2  # pixels, for the overlay video


def save_driving_frames(stage_dir: Path, frames: torch.Tensor, fps: float) -> None:
    """frames [T, H, W, 4] straight-alpha RGBA -> frames/NNN.png and driving.mp4 (on white)."""
    save_png_frames(stage_dir / "frames", frames)
    write_video(stage_dir / "driving.mp4", _on_white(frames), fps=fps)


def load_driving_frames(stage_dir: Path) -> torch.Tensor:
    """The driving video [T, H, W, 4] that `save_driving_frames` wrote into `stage_dir` (the video stage's)."""
    frames = load_png_frames(stage_dir / "frames")
    if len(frames) == 0:
        raise DynaPoseError(f"no driving frames in {stage_dir / 'frames'}: run the video stage first")
    return frames


def save_keypoints(
    stage_dir: Path,
    support: SupportKeypoints,  # on the input image
    keypoints: torch.Tensor,  # [T, N, 2] on the driving frames
    frames: torch.Tensor,  # [T, H, W, 4] for the overlay
    fps: float,
    visibility: torch.Tensor | None = None,  # [T, N] 1 visible, 0 lost; None = all visible
) -> None:
    """support.json (the support format), keypoints.json (pixels, x right, y down; visibility 1/0) and overlay.mp4."""
    stage_dir.mkdir(parents=True, exist_ok=True)
    save_support(stage_dir / "support.json", support)
    if visibility is None:
        visibility = torch.ones(keypoints.shape[:2])
    size = list(frames.shape[1:3])
    data = {"names": support.names, "image_size": size, "keypoints": keypoints.tolist(),
            "visibility": visibility.round().int().tolist()}  # fmt: skip
    (stage_dir / "keypoints.json").write_text(json.dumps(data))
    overlay = draw_keypoints(_on_white(frames), keypoints, support.skeleton, visibility)
    write_video(stage_dir / "overlay.mp4", overlay, fps=fps)


def load_keypoints(directory: Path) -> tuple[SupportKeypoints, torch.Tensor, torch.Tensor]:
    """(support keypoints, per-frame keypoints [T, N, 2], visibility [T, N]) that `save_keypoints` wrote.

    Files written before visibility existed have none: every point is then visible.
    """
    if not (directory / "keypoints.json").exists():
        raise DynaPoseError(f"no keypoints in {directory}: run the keypoints stage first")
    data = json.loads((directory / "support.json").read_text())
    support = load_support(directory / "support.json", tuple(data["image_size"]))
    written = json.loads((directory / "keypoints.json").read_text())
    keypoints = torch.tensor(written["keypoints"])  # [T, N, 2]
    if "visibility" in written:
        visibility = torch.tensor(written["visibility"]).float()  # [T, N]
    else:
        visibility = torch.ones(keypoints.shape[:2])  # written before visibility existed
    if visibility.shape != keypoints.shape[:2]:
        raise DynaPoseError(
            f"{directory / 'keypoints.json'}: visibility {list(visibility.shape)} does not match "
            f"keypoints {list(keypoints.shape)}"
        )
    return support, keypoints, visibility


def draw_keypoints(
    frames: torch.Tensor,  # [T, H, W, 3]
    keypoints: torch.Tensor,  # [T, N, 2]
    skeleton: list[tuple[int, int]] = (),
    visibility: torch.Tensor | None = None,  # [T, N]; lost points and their bones are not drawn
) -> torch.Tensor:
    """Green skeleton lines and red square markers of the visible keypoints on RGB frames [T, H, W, 3]."""
    import cv2

    if visibility is None:
        visibility = torch.ones(keypoints.shape[:2])
    drawn = []
    for frame, points, shown in zip(to_uint8(frames), keypoints.floor().long().tolist(), visibility.bool().tolist()):
        canvas = frame.copy()
        for i, j in skeleton:
            if shown[i] and shown[j]:
                cv2.line(canvas, tuple(points[i]), tuple(points[j]), (0, 200, 0), 1, cv2.LINE_AA)
        for (x, y), visible in zip(points, shown):
            if visible:
                corner = MARKER_RADIUS
                cv2.rectangle(canvas, (x - corner, y - corner), (x + corner, y + corner), (255, 0, 0), -1)
        drawn.append(torch.from_numpy(canvas).float() / 255)
    return torch.stack(drawn)


def _on_white(frames: torch.Tensor) -> torch.Tensor:
    return composite(frames, WHITE)  # [T, H, W, 3]
