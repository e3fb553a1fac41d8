"""Keypoints stage: support keypoints on the input image and per-frame keypoints on the driving video.

Writes keypoints/support.json, keypoints/keypoints.json and overlay.mp4 (keypoints drawn on
the driving frames). `keypoints.source=oracle` projects the synthetic subject's joints;
the PoseAnything CAPE model plugs in here as a further source.
"""

from pathlib import Path

import torch
from omegaconf import DictConfig

from ..checkpoint import mark_done
from ..data.driving import load_driving_frames, save_keypoints
from ..data.inputs import check_source, synthetic_sample
from ..pretrained import PretrainedModel

NAME = "keypoints"


def check(cfg: DictConfig) -> list[PretrainedModel]:
    check_source(cfg, NAME, ("oracle",))
    return []


def run(cfg: DictConfig, run_dir: Path, device: torch.device) -> None:
    check_source(cfg, NAME, ("oracle",))
    sample = synthetic_sample(cfg, run_dir)
    stage_dir = run_dir / NAME
    frames = load_driving_frames(run_dir)
    save_keypoints(stage_dir, sample.support_keypoints, sample.keypoints, sample.joint_names, frames, cfg.video.fps)
    mark_done(stage_dir)
