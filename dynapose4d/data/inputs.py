"""The run's inputs, written once to <run_dir>/input: the reference image and any ground truth."""

from pathlib import Path

import torch
from omegaconf import DictConfig

from ..checkpoint import mark_done
from ..errors import DynaPoseError
from ..export import load_png, save_png
from .image import load_reference_image

BACKGROUNDS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}


def input_dir(run_dir: Path) -> Path:
    return run_dir / "input"


def background_color(cfg: DictConfig) -> torch.Tensor:
    if cfg.background not in BACKGROUNDS:
        raise DynaPoseError(f"background must be one of {sorted(BACKGROUNDS)}, got {cfg.background!r}")
    return torch.tensor(BACKGROUNDS[cfg.background])


def read_inputs(cfg: DictConfig) -> dict:
    """Load (and so validate) the inputs before anything is written: {"reference": RGBA [H, W, 4], "sample"?}."""
    if cfg.synthetic is not None:
        from .synthetic import build_sample

        sample = build_sample(synthetic_subject(cfg), resolution=cfg.image_size)
        return {"reference": sample.image, "sample": sample}
    if cfg.image is not None:
        return {"reference": load_reference_image(cfg.image, cfg.image_size, cfg.mask, cfg.border_ratio)}
    raise DynaPoseError("no input: pass image=path/to/image.png, or experiment=synthetic for the built-in subject")


def write_inputs(inputs: dict, run_dir: Path) -> None:
    """Write input/reference.png and, for the synthetic subject, its ground truth; then mark input DONE."""
    directory = input_dir(run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    if "sample" in inputs:
        from .synthetic import save_sample

        save_sample(inputs["sample"], directory / "synthetic")
    save_png(directory / "reference.png", inputs["reference"])
    mark_done(directory)


def load_reference(run_dir: Path) -> torch.Tensor:
    """The RGBA reference image [H, W, 4] written by `write_inputs`."""
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
    """Ground truth saved by `write_inputs`, or None for a real image."""
    if cfg.synthetic is None:
        return None
    from .synthetic import load_sample

    return load_sample(input_dir(run_dir) / "synthetic")


def oracle_sample(cfg: DictConfig, run_dir: Path, stage: str):
    """The ground truth an `oracle` source reads; a clear error for any other source or a real image."""
    source = cfg[stage].source
    if source != "oracle":
        raise DynaPoseError(f"unknown {stage}.source={source!r}; available: oracle")
    sample = synthetic_sample(cfg, run_dir)
    if sample is None:
        raise DynaPoseError(f"{stage}.source=oracle needs ground truth: use it with experiment=synthetic")
    return sample
