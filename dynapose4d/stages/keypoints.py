"""Keypoints stage: support keypoints on the input image and per-frame keypoints on the driving video.

Writes keypoints/support.json (the support format, see data/support.py), keypoints.json
(pixels of the driving frames) and overlay.mp4 (points and skeleton drawn on the frames).
Sources (`keypoints=<source>`):
  poseanything  PoseAnything, one-shot: the support keypoints on the input image (from
                `keypoints.support`, or placed automatically on its mask) are found again
                in every frame;
  track         no weights: the support keypoints (as for poseanything) followed through the
                driving video with pyramidal Lucas-Kanade; points that fail its forward-backward
                check are written with visibility 0, and KML skips them (see keypoint_tracking.py);
  oracle        the ground-truth sample's keypoints (experiment=ground_truth or synthetic).
"""

import logging

import torch
from omegaconf import DictConfig

from ..data.driving import save_keypoints
from ..data.image import WHITE, composite, resize_square
from ..data.support import SupportKeypoints, automatic_support, load_support
from ..errors import DynaPoseError
from ..keypoint_tracking import TrackSettings, track_points
from ..pretrained import PretrainedModel, resolve_pretrained
from ..pretrained.poseanything import CapeDetector, load_cape_checkpoint, poseanything_weights
from ..rules import COUNT, PATH, Integer, Nullable, Number, Text, Variants
from ..run import Run
from . import STAGES, Stage

log = logging.getLogger(__name__)
NAME = "keypoints"

# configs/keypoints/<source>.yaml
SUPPORT = {"support": Nullable(PATH), "num_keypoints": COUNT}
SETTINGS = Variants(
    "source",
    poseanything={"checkpoint": Text("a URL or a path"), **SUPPORT, "batch_size": COUNT},
    track={
        **SUPPORT,
        "window": Integer(min=3, odd=True),  # OpenCV's LK window has a centre pixel
        "levels": Integer(min=0),
        "fb_threshold": Number(above=0),
    },
    oracle={},
)


@STAGES.register(NAME, schema=SETTINGS)
class KeypointsStage(Stage):
    """Support keypoints on the input image, and the driving video's keypoints from its source."""

    name = NAME
    after = ("video",)

    @classmethod
    def check(cls, cfg: DictConfig) -> list[PretrainedModel]:
        if cfg.keypoints.source == "poseanything":
            return [poseanything_weights(cfg.keypoints.checkpoint)]
        return []

    @classmethod
    def execute(cls, run: Run) -> None:
        frames = run.driving_frames()  # [T, H, W, 4]
        source = run.cfg.keypoints.source
        visibility = None  # all visible, except where tracking loses points
        if source == "oracle":
            support, keypoints = oracle_keypoints(run)
        elif source == "track":
            support = support_keypoints(run)
            keypoints, visibility = tracked_keypoints(run, support, frames)
        else:
            support = support_keypoints(run)
            detector = load_detector(run, support)
            keypoints = detector.detect(composite(frames, WHITE).to(run.device), run.cfg.keypoints.batch_size).cpu()
        save_keypoints(run.stage_dir(NAME), support, keypoints, frames, run.cfg.video.fps, visibility)

    @classmethod
    def verify(cls, run: Run) -> list[str]:
        """What is wrong with the outputs: keypoints missing, not finite, or not one set per driving frame."""
        try:
            _, keypoints, _ = run.keypoints()
        except DynaPoseError as error:
            return [str(error)]
        problems = [] if keypoints.isfinite().all() else ["keypoints.json holds non-finite keypoints"]
        frames = len(run.driving_frames())
        if len(keypoints) != frames:
            problems.append(f"keypoints.json has {len(keypoints)} frames, the driving video {frames}")
        return problems


def track_settings(cfg: DictConfig) -> TrackSettings:
    settings = cfg.keypoints
    return TrackSettings(settings.window, settings.levels, settings.fb_threshold)


def oracle_keypoints(run: Run) -> tuple[SupportKeypoints, torch.Tensor]:
    """The ground-truth sample's keypoints: support points on the input image and [T, N, 2] per driving frame."""
    sample = run.ground_truth
    keypoints, size = sample.keypoints, tuple(sample.image.shape[:2])
    support = SupportKeypoints(keypoints.support, list(keypoints.bones), list(keypoints.names), size, keypoints.joints)
    return support, keypoints.frames


def tracked_keypoints(run: Run, support: SupportKeypoints, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Support points followed from the reference image through the frames [T, H, W, 4]: ([T, N, 2], [T, N]).

    The reference comes first in the tracked sequence because a generated video's first frame
    need not equal it; the support points are rescaled to the frames' size.
    """
    size = frames.shape[1]
    reference = resize_square(run.reference(), size)  # [H, W, 4]
    points = support.points * size / support.image_size[1]  # [N, 2] in frame pixels
    sequence = composite(torch.cat([reference[None], frames]), WHITE)  # [1 + T, H, W, 3]
    tracked, visibility = track_points(sequence, points, track_settings(run.cfg))
    lost = 1 - visibility[-1].mean().item()
    log.info("keypoints: tracking lost %.0f%% of the points by the last frame", 100 * lost)
    return tracked[1:], visibility[1:]


def support_keypoints(run: Run) -> SupportKeypoints:
    """The user's support JSON (`keypoints.support`), or well-spread points on the reference's mask."""
    settings = run.cfg.keypoints
    reference = run.reference()  # [S, S, 4]
    size = tuple(reference.shape[:2])
    if settings.support is not None:
        return load_support(settings.support, size)
    support = automatic_support(reference[..., 3], settings.num_keypoints)
    log.info("keypoints: %d support points placed automatically (keypoints.support=... to give your own)",
             len(support.points))  # fmt: skip
    return support


def load_detector(run: Run, support: SupportKeypoints):
    """PoseAnything from `keypoints.checkpoint`, with the support image encoded, on the run's device."""
    device = run.device
    model = load_cape_checkpoint(resolve_pretrained(poseanything_weights(run.cfg.keypoints.checkpoint))).to(device)
    reference = composite(run.reference(), WHITE)  # [S, S, 3]
    return CapeDetector(model, reference.to(device), support.points.to(device), support.skeleton)
