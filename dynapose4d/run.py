"""One run: its config, device and directory, and typed access to what its stages wrote.

Every path of the run directory is spelled here, and the stages read each other's outputs
only through these accessors:

    <run_dir>/
      .hydra/config.yaml        the resolved config (config.resume.yaml on a resume)
      .lock                     held while a process trains in this directory
      train.log                 the package's log
      tb/<stage>/               TensorBoard events and losses.csv of the training stages
      metrics.json              held-out metrics per stage, with ground truth
      input/                    reference.png, clip/NNN.png (video=file), ground_truth/ (a sample, data/sample.py)
      static/                   checkpoint.pt, model.ply, renders/
      video/                    frames/NNN.png, driving.mp4, candidates/ (SVD)
      keypoints/                support.json, keypoints.json, overlay.mp4
      dynamic/                  checkpoint.pt, frames/NNN.ply, renders/{reference,orbit}.mp4, mesh/ (scripts/export.py)
      superseded/<time>/        outputs made from a stage that was redone (and the old input/ when the inputs changed)
Each stage directory holds DONE once its outputs were verified (see checkpoint.mark_done).
"""

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from omegaconf import DictConfig

from .errors import DynaPoseError

BACKGROUNDS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}
CHECKPOINT = "checkpoint.pt"
INPUT = "input"
SUPERSEDED = "superseded"


@dataclass
class Run:
    cfg: DictConfig
    dir: Path
    device: torch.device

    # ----- layout ---------------------------------------------------------------------------

    def stage_dir(self, stage: str) -> Path:
        return self.dir / stage

    def log_dir(self, stage: str) -> Path:
        """TensorBoard events and losses.csv of a training stage (outside its directory: not an output)."""
        return self.dir / "tb" / stage

    def checkpoint_path(self, stage: str) -> Path:
        return self.dir / stage / CHECKPOINT

    @property
    def input_dir(self) -> Path:
        return self.dir / INPUT

    @property
    def ground_truth_dir(self) -> Path:
        return self.input_dir / "ground_truth"

    @property
    def metrics_path(self) -> Path:
        return self.dir / "metrics.json"

    def record_metrics(self, section: str, values: dict) -> None:
        """Merge `values` under `section` into metrics.json, atomically."""
        path = self.metrics_path
        metrics = json.loads(path.read_text()) if path.exists() else {}
        metrics[section] = values
        temporary = path.with_name(f".metrics.json.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(metrics, indent=2) + "\n")
        os.replace(temporary, path)

    # ----- what the stages read -------------------------------------------------------------

    @cached_property
    def background(self) -> torch.Tensor:
        """The colour behind the object [3] on the run's device."""
        return torch.tensor(BACKGROUNDS[self.cfg.background], device=self.device)

    def reference(self) -> torch.Tensor:
        """The RGBA input image [H, W, 4], as the run framed it."""
        from .media import load_png

        return load_png(self.input_dir / "reference.png")

    def clip(self) -> torch.Tensor:
        """The user's driving clip [F, H, W, 4] (`video=file`)."""
        from .media import load_png_frames

        return load_png_frames(self.input_dir / "clip")

    def driving_frames(self) -> torch.Tensor:
        """The driving video [T, H, W, 4] the video stage wrote."""
        from .data.driving import load_driving_frames

        return load_driving_frames(self.stage_dir("video"))

    def keypoints(self):
        """(support keypoints, per-frame keypoints [T, N, 2], visibility [T, N]) the keypoints stage wrote."""
        from .data.driving import load_keypoints

        return load_keypoints(self.stage_dir("keypoints"))

    def static_model(self):
        """The static stage's Gaussians (a GaussianModel on the CPU)."""
        from .checkpoint import load_checkpoint
        from .gaussians import GaussianModel

        path = self.checkpoint_path("static")
        if not path.exists():
            raise DynaPoseError(f"no static model at {path}: run the static stage first")
        return GaussianModel(load_checkpoint(path)["model"])

    @cached_property
    def ground_truth(self):
        """The ground-truth sample written with the inputs (data/sample.py), or None for a real image or clip."""
        if not self.ground_truth_dir.is_dir():
            return None
        from .data.sample import load_sample

        return load_sample(self.ground_truth_dir)


def resolve_device(name: str) -> torch.device:
    """`device=`: auto picks CUDA when there is one; asking for CUDA without it fails here, in one line."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DynaPoseError(f"device={name} but CUDA is not available; use device=cpu or device=auto")
    return device
