"""Weights-free keypoints: support points followed through a video with pyramidal Lucas-Kanade.

Rule: points are tracked frame to frame (t-1 -> t) with OpenCV's `calcOpticalFlowPyrLK`, then
tracked back (t -> t-1). A point is lost when OpenCV reports failure, when the round trip misses
its start by more than `fb_threshold` pixels (Kalal et al. 2010: drift and occlusion both break
the round trip), or when it leaves the image. A lost point stays lost for the rest of the clip
and keeps its last good position: re-finding it would need a detector, and a frozen position is
never used because its visibility is 0.

Coordinates follow the package: pixels, x right, y down, pixel centres at +0.5 (OpenCV puts
them at integers, so the conversion happens only at its boundary).
"""

from dataclasses import dataclass

import numpy as np
import torch

from .errors import DynaPoseError


@dataclass(frozen=True)
class TrackSettings:
    window: int = 21  # LK window side in pixels (odd)
    levels: int = 3  # pyramid levels above the full image
    fb_threshold: float = 1.0  # forward-backward round-trip error (pixels) above which a point is lost

    def check(self) -> None:
        if self.window < 3 or self.window % 2 == 0:
            raise DynaPoseError(f"keypoints.window must be an odd number >= 3, got {self.window}")
        if self.levels < 0:
            raise DynaPoseError(f"keypoints.levels must be >= 0, got {self.levels}")
        if self.fb_threshold <= 0:
            raise DynaPoseError(f"keypoints.fb_threshold must be > 0 pixels, got {self.fb_threshold}")


def to_gray(frames: torch.Tensor) -> np.ndarray:
    """RGB frames [T, H, W, 3] in [0, 1] -> grayscale uint8 [T, H, W], the type OpenCV's LK wants."""
    import cv2

    rgb = (frames.clamp(0, 1) * 255).round().to(torch.uint8).numpy()  # [T, H, W, 3]
    return np.stack([cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in rgb])


def track_points(
    frames: torch.Tensor, points: torch.Tensor, settings: TrackSettings = TrackSettings()
) -> tuple[torch.Tensor, torch.Tensor]:
    """Follow `points` [N, 2] (on frame 0) through RGB frames [T, H, W, 3].

    Returns (positions [T, N, 2], visibility [T, N] in {0, 1}); row 0 is the input points.
    """
    settings.check()
    gray = to_gray(frames)  # [T, H, W]
    height, width = gray.shape[1:]
    current = points.double().numpy() - 0.5  # [N, 2] OpenCV pixel coordinates
    visible = _inside(current, width, height)  # [N]
    positions, visibility = [current], [visible]
    for previous_frame, frame in zip(gray[:-1], gray[1:]):
        moved, ok = _step(previous_frame, frame, current, settings)
        visible = visible & ok & _inside(moved, width, height)
        current = np.where(visible[:, None], moved, current)  # lost points keep their last good position
        positions.append(current)
        visibility.append(visible)
    tracked = torch.from_numpy(np.stack(positions) + 0.5).float()  # [T, N, 2]
    return tracked, torch.from_numpy(np.stack(visibility)).float()


def _step(previous: np.ndarray, current: np.ndarray, points: np.ndarray, settings: TrackSettings):
    """One forward-backward LK step of points [N, 2]: (moved [N, 2], passed [N] bool)."""
    import cv2

    arguments = {
        "winSize": (settings.window, settings.window),
        "maxLevel": settings.levels,
        # 30 iterations or a 0.01 px update: OpenCV's sample settings, converged well below the FB threshold.
        "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01),
    }
    start = points.astype(np.float32).reshape(-1, 1, 2)  # [N, 1, 2] the layout OpenCV wants
    forward, status, _ = cv2.calcOpticalFlowPyrLK(previous, current, start, None, **arguments)
    backward, back_status, _ = cv2.calcOpticalFlowPyrLK(current, previous, forward, None, **arguments)
    round_trip = np.linalg.norm(backward - start, axis=-1)[:, 0]  # [N] pixels
    passed = (status[:, 0] == 1) & (back_status[:, 0] == 1) & (round_trip <= settings.fb_threshold)
    return forward[:, 0].astype(np.float64), passed


def _inside(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """Points [N, 2] in OpenCV coordinates whose pixel lies in the image: [N] bool."""
    x, y = points[:, 0], points[:, 1]
    return (x >= -0.5) & (x < width - 0.5) & (y >= -0.5) & (y < height - 0.5)
