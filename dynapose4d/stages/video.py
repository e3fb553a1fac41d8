"""Video stage: the driving video, written as video/frames/NNN.png (RGBA) and driving.mp4.

Sources (`video=<source>`):
  svd     Stable Video Diffusion animates the input image (DreamGaussian4D's recipe);
  file    the user's own clip (video-to-4D), read and framed before the run started;
  oracle  the synthetic subject's ground-truth reference-view renders.
SVD frames have no alpha: the mask comes from rembg when it is installed, else from keying
out the plain white background the input was composited on.
"""

import logging
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image

from ..checkpoint import mark_done
from ..data.driving import save_driving_frames
from ..data.image import WHITE, composite, key_out_background, load_reference_image, remove_background, resize_square
from ..data.inputs import check_source, load_clip, load_reference, synthetic_sample
from ..export import to_uint8
from ..pretrained import PretrainedModel

log = logging.getLogger(__name__)
NAME = "video"
SOURCES = ("svd", "file", "oracle")


def check(cfg: DictConfig) -> list[PretrainedModel]:
    if check_source(cfg, NAME, SOURCES) != "svd":
        return []
    from ..priors.svd import svd_weights

    return [svd_weights(cfg.video.model)]


def run(cfg: DictConfig, run_dir: Path, device: torch.device) -> None:
    source = check_source(cfg, NAME, SOURCES)
    if source == "oracle":
        frames = synthetic_sample(cfg, run_dir).driving_video
    elif source == "file":
        frames = load_clip(run_dir)
    else:
        frames = generate_with_svd(cfg, run_dir, device)
    save_driving_frames(run_dir / NAME, frames, cfg.video.fps)
    mark_done(run_dir / NAME)


def generate_with_svd(cfg: DictConfig, run_dir: Path, device: torch.device) -> torch.Tensor:
    """SVD's video of the input image, as RGBA frames [F, S, S, 4] framed like the reference (S = image_size)."""
    from ..priors.svd import generate_driving_video, svd_pipeline

    settings = cfg.video
    # The original file at SVD's resolution (the same recentring, so the same framing): upscaling the
    # saved 256² reference would blur the video.
    if cfg.image is not None:
        image = load_reference_image(cfg.image, settings.height, cfg.mask, cfg.border_ratio)
    else:
        image = resize_square(load_reference(run_dir), settings.height)
    options = {"cpu_offload": settings.cpu_offload, "forward_chunking": settings.forward_chunking}
    with svd_pipeline(settings.model, device, **options) as pipe:
        video = generate_driving_video(
            pipe,
            composite(image, WHITE),
            num_frames=settings.num_frames,
            steps=settings.steps,
            fps=settings.fps,
            motion_bucket_id=settings.motion_bucket_id,
            noise_aug_strength=settings.noise_aug_strength,
            decode_chunk_size=settings.decode_chunk_size,
            seed=settings.seed,
            height=settings.height,
            width=settings.width,
            pad=settings.pad,
        )  # fmt: skip  [F, H, H, 3]
    rgba = torch.cat([video, frame_masks(video, settings.mask)], dim=-1)  # [F, H, H, 4]
    return resize_square(rgba, cfg.image_size)


def frame_masks(video: torch.Tensor, method: str) -> torch.Tensor:
    """Object masks [F, H, W, 1] of generated frames [F, H, W, 3]: rembg, or keying out the white background."""
    if method == "auto":
        try:
            import rembg  # noqa: F401

            method = "rembg"
        except ImportError:
            log.info("video: rembg is not installed; masks come from keying out the white background")
            method = "background"
    if method == "background":
        return key_out_background(video, WHITE)
    if method != "rembg":
        raise ValueError(f"video.mask must be auto, rembg or background, got {method!r}")
    cut_out = remove_background([Image.fromarray(frame) for frame in to_uint8(video)], "the generated video")
    return torch.from_numpy(np.stack([np.asarray(frame, np.float32)[..., 3:] for frame in cut_out]) / 255)
