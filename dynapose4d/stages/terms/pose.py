"""The Pose Alignment Loss of the dynamic stage (paper §3.2): PAL = w_kml L_KML + w_scl L_SCL."""

import torch

from ...deform import normalised_time
from ...losses import keypoint_match_loss, spatio_temporal_consistency_loss
from . import DYNAMIC_TERMS


@DYNAMIC_TERMS.register("kml")
def kml(stage):
    """L_KML (eq. 4) between the driving frames' keypoints and those of the deformed model (dynamic.kml_mode)."""

    def term(batch):
        predicted = stage.predicted_keypoints(batch.frames, batch.renders, batch.alphas)  # [B, N, 2]
        visibility = stage.keypoint_visibility[batch.frames]  # [B, N] 0 where tracking lost a point
        return keypoint_match_loss(predicted, stage.keypoints[batch.frames], stage.camera.width, visibility)

    return term


@DYNAMIC_TERMS.register("scl")
def scl(stage):
    """L_SCL (eq. 5) over each sampled frame and the next one (the last frame has no successor)."""

    def term(batch):
        frames = batch.frames[batch.frames < stage.num_frames - 1].float()
        if len(frames) == 0:
            return torch.zeros((), device=stage.device)
        canonical = stage.model.params["means"]
        now, after = (
            stage.deformation.motion_points(canonical, normalised_time(times, stage.num_frames).to(stage.device))
            for times in (frames, frames + 1)
        )  # [B', M, 3] each
        return sum(spatio_temporal_consistency_loss(torch.stack([a, b])) for a, b in zip(now, after))

    return term
