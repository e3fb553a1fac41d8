"""The 3D keypoint error: how far the deformation field carries the true keypoints from their true positions.

The field phi moves points of the canonical (static) model, which is the object at frame 0.
Evaluated at a sample's true 3D keypoints of frame 0 (`keypoints.frames3d`), it should carry
them to their true positions at every frame; the error is the distance, in world units (the
object fits within a radius of about 1 of the origin). It scores the motion alone: a limb that
smears instead of rotating can match its pixels at the reference view and still miss here.
"""

from collections.abc import Callable

import torch


def keypoint_error_3d(
    move: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],  # points [N, 3], frames [B] -> moved [B, N, 3]
    truth: torch.Tensor,  # [T, N, 3] the true keypoints at every frame, world units
    frames: list[int],
) -> tuple[float, list[float]]:
    """The mean distance over `frames` and keypoints, and the mean over keypoints at each of `frames`."""
    index = torch.tensor(frames)
    moved = move(truth[0], index).detach().cpu()  # [B, N, 3]
    distances = (moved - truth[index]).norm(dim=-1)  # [B, N]
    return distances.mean().item(), distances.mean(dim=1).tolist()
