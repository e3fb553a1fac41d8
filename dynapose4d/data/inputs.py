"""The run's inputs, written once to <run_dir>/input: the reference image and any ground truth."""

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from ..checkpoint import is_done, mark_done
from ..errors import DynaPoseError
from ..export import load_png, save_png
from .image import load_reference_image

log = logging.getLogger(__name__)
BACKGROUNDS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}


def input_dir(run_dir: Path) -> Path:
    return run_dir / "input"


def background_color(cfg: DictConfig) -> torch.Tensor:
    if cfg.background not in BACKGROUNDS:
        raise DynaPoseError(f"background must be one of {sorted(BACKGROUNDS)}, got {cfg.background!r}")
    return torch.tensor(BACKGROUNDS[cfg.background])


def prepare_inputs(cfg: DictConfig, run_dir: Path) -> None:
    """Write input/reference.png (RGBA) and, for the synthetic subject, its ground truth."""
    directory = input_dir(run_dir)
    if is_done(directory):
        return
    directory.mkdir(parents=True, exist_ok=True)
    if cfg.synthetic is not None:
        from .synthetic import build_sample, save_sample

        sample = build_sample(synthetic_subject(cfg), resolution=cfg.image_size)
        save_sample(sample, directory / "synthetic")
        reference = sample.image
    elif cfg.image is not None:
        reference = load_reference_image(cfg.image, cfg.image_size)
    else:
        raise DynaPoseError("no input: pass image=path/to/image.png, or experiment=synthetic for the built-in subject")
    save_png(directory / "reference.png", reference)
    mark_done(directory)


def load_reference(run_dir: Path) -> torch.Tensor:
    """The RGBA reference image [H, W, 4] written by `prepare_inputs`."""
    return load_png(input_dir(run_dir) / "reference.png")


def synthetic_subject(cfg: DictConfig):
    """The synthetic subject of `cfg.synthetic` (rebuilt from its seed: it is deterministic), or None."""
    if cfg.synthetic is None:
        return None
    from .synthetic import make_subject

    settings = cfg.synthetic
    return make_subject(
        kind=settings.kind, num_frames=settings.num_frames, seed=settings.seed, num_gaussians=settings.num_gaussians
    )


def synthetic_sample(cfg: DictConfig, run_dir: Path):
    """Ground truth saved by `prepare_inputs`, or None for a real image."""
    if cfg.synthetic is None:
        return None
    from .synthetic import load_sample

    return load_sample(input_dir(run_dir) / "synthetic")
