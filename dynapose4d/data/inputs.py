"""The run's inputs, written once to <run_dir>/input: the reference image and any ground truth."""

from typing import TYPE_CHECKING

import torch
from omegaconf import DictConfig

from ..checkpoint import mark_done
from ..errors import DynaPoseError
from ..export import save_png, save_png_frames
from .image import load_reference_image

if TYPE_CHECKING:
    from ..run import Run


def read_inputs(cfg: DictConfig) -> dict:
    """Load (and so validate) the inputs before anything is written.

    Returns {"reference": RGBA [H, W, 4]} plus "sample" (synthetic ground truth) or "clip"
    (the user's driving video [F, H, W, 4], `video=file`).
    """
    if cfg.synthetic is not None:
        from .synthetic import build_sample

        sample = build_sample(synthetic_subject(cfg), resolution=cfg.image_size)
        return {"reference": sample.image, "sample": sample}
    clip = load_user_video(cfg) if cfg.video.source == "file" else None
    if cfg.image is not None:
        reference = load_reference_image(cfg.image, cfg.image_size, cfg.mask, cfg.border_ratio)
        return {"reference": reference} if clip is None else {"reference": reference, "clip": clip}
    if clip is not None:  # video-to-4D: the clip's first frame is the input image
        return {"reference": clip[0], "clip": clip}
    raise DynaPoseError(
        "no input: pass image=path/to/image.png, video=path/to/clip.mp4 (or a directory of frames), "
        "or experiment=synthetic for the built-in subject"
    )


def load_user_video(cfg: DictConfig) -> torch.Tensor:
    """The user's driving clip (`video=file`) as RGBA frames [F, S, S, 4], framed once for the whole clip."""
    from .video_input import load_video_frames

    settings = cfg.video
    if settings.path is None:
        raise DynaPoseError("video.source=file needs a clip: pass video=path/to/clip.mp4 or a directory of frames")
    return load_video_frames(
        settings.path, cfg.image_size, cfg.border_ratio, settings.max_frames, settings.masks, settings.frame_step
    )


def write_inputs(inputs: dict, run: "Run") -> None:
    """Write input/reference.png, the synthetic ground truth or the user's clip (input/clip/NNN.png); mark DONE."""
    directory = run.input_dir
    directory.mkdir(parents=True, exist_ok=True)
    if "clip" in inputs:
        save_png_frames(directory / "clip", inputs["clip"])
    if "sample" in inputs:
        from .synthetic import save_sample

        save_sample(inputs["sample"], run.ground_truth_dir)
    save_png(directory / "reference.png", inputs["reference"])
    mark_done(directory)


def synthetic_subject(cfg: DictConfig):
    """The synthetic subject of `cfg.synthetic` (rebuilt from its seed: it is deterministic), or None."""
    if cfg.synthetic is None:
        return None
    from .synthetic import make_subject

    settings = cfg.synthetic
    return make_subject(
        kind=settings.kind, num_frames=settings.num_frames, seed=settings.seed, num_gaussians=settings.num_gaussians
    )
