"""Keypoints stage: support keypoints on the input image and per-frame keypoints on the driving video.

Writes keypoints/support.json (the support format, see data/support.py), keypoints.json
(pixels of the driving frames) and overlay.mp4 (points and skeleton drawn on the frames).
Sources (`keypoints=<source>`):
  poseanything  PoseAnything, one-shot: the support keypoints on the input image (from
                `keypoints.support`, or placed automatically on its mask) are found again
                in every frame;
  oracle        the synthetic subject's joints, projected.
"""

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from ..checkpoint import mark_done
from ..data.driving import load_driving_frames, save_keypoints
from ..data.image import WHITE, composite
from ..data.inputs import check_source, load_reference, synthetic_sample
from ..data.support import SupportKeypoints, automatic_support, load_support
from ..pretrained import PretrainedModel, resolve_pretrained

log = logging.getLogger(__name__)
NAME = "keypoints"
SOURCES = ("poseanything", "oracle")
POSEANYTHING_DOWNLOAD = (
    "the PoseAnything README (github.com/orhir/PoseAnything): the 1-shot Swin 'Small' split-1 model, "
    "https://drive.google.com/file/d/1RT1Q8AMEa1kj6k9ZqrtWIKyuR4Jn4Pqc (1shot-swin_graph_split1.pth)"
)


def poseanything_weights(checkpoint: str | None) -> PretrainedModel:
    return PretrainedModel(
        "PoseAnything", checkpoint, "keypoints.checkpoint", "Apache-2.0", download=POSEANYTHING_DOWNLOAD
    )


def check(cfg: DictConfig) -> list[PretrainedModel]:
    if check_source(cfg, NAME, SOURCES) == "poseanything":
        return [poseanything_weights(cfg.keypoints.checkpoint)]
    return []


def run(cfg: DictConfig, run_dir: Path, device: torch.device) -> None:
    frames = load_driving_frames(run_dir)  # [T, H, W, 4]
    if check_source(cfg, NAME, SOURCES) == "oracle":
        support, keypoints = oracle_keypoints(cfg, run_dir)
    else:
        support = support_keypoints(cfg, run_dir)
        detector = load_detector(cfg, run_dir, support, device)
        keypoints = detector.detect(composite(frames, WHITE).to(device), cfg.keypoints.batch_size).cpu()
    save_keypoints(run_dir / NAME, support, keypoints, frames, cfg.video.fps)
    mark_done(run_dir / NAME)


def oracle_keypoints(cfg: DictConfig, run_dir: Path) -> tuple[SupportKeypoints, torch.Tensor]:
    sample = synthetic_sample(cfg, run_dir)
    bones = [(parent, joint) for joint, parent in enumerate(sample.parents) if joint > 0]
    size = tuple(sample.image.shape[:2])
    return SupportKeypoints(sample.support_keypoints, bones, list(sample.joint_names), size), sample.keypoints


def support_keypoints(cfg: DictConfig, run_dir: Path) -> SupportKeypoints:
    """The user's support JSON (`keypoints.support`), or well-spread points on the reference's mask."""
    reference = load_reference(run_dir)  # [S, S, 4]
    size = tuple(reference.shape[:2])
    if cfg.keypoints.support is not None:
        return load_support(cfg.keypoints.support, size)
    support = automatic_support(reference[..., 3], cfg.keypoints.num_keypoints)
    log.info("keypoints: %d support points placed automatically (keypoints.support=... to give your own)",
             len(support.points))  # fmt: skip
    return support


def load_detector(cfg: DictConfig, run_dir: Path, support: SupportKeypoints, device: torch.device):
    """PoseAnything from `keypoints.checkpoint`, with the support image encoded, on `device`."""
    from ..priors.cape import CapeDetector, load_cape_checkpoint

    model = load_cape_checkpoint(resolve_pretrained(poseanything_weights(cfg.keypoints.checkpoint))).to(device)
    reference = composite(load_reference(run_dir), WHITE)  # [S, S, 3]
    return CapeDetector(model, reference.to(device), support.points.to(device), support.skeleton)
