"""Video stage: the driving video, written as video/frames/NNN.png (RGBA) and driving.mp4.

`video.source=oracle` takes the synthetic subject's ground-truth reference-view renders;
Stable Video Diffusion and user videos plug in here as further sources.
"""

from pathlib import Path

import torch
from omegaconf import DictConfig

from ..checkpoint import mark_done
from ..data.driving import save_driving_frames
from ..data.inputs import oracle_sample

NAME = "video"


def required_weights(cfg: DictConfig) -> list:
    return []  # the oracle source reads ground truth


def run(cfg: DictConfig, run_dir: Path, device: torch.device) -> None:
    sample = oracle_sample(cfg, run_dir, NAME)
    stage_dir = run_dir / NAME
    save_driving_frames(stage_dir, sample.driving_video, cfg.video.fps)
    mark_done(stage_dir)
