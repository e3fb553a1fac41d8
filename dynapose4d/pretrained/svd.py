"""Stable Video Diffusion: the reference image -> the driving video (DreamGaussian4D's recipe).

DreamGaussian4D's scripts/gen_vid.py calls img2vid with the pipeline's defaults at 512x512
and decodes all frames at once; `generate_driving_video`'s defaults are those. The image
goes in as PIL, because diffusers only resizes PIL input for its CLIP branch (a tensor of
the wrong size fails). gen_vid.py's optional pad branch (`pad`) fits SVD's landscape
1024x576 training clips: the square image is padded left and right with its corner colour
to that aspect, and the centre square is cropped back out of every frame.
"""

import contextlib
import gc
from collections.abc import Iterator
from dataclasses import replace

import torch
from PIL import Image

from ..errors import DynaPoseError, first_line
from ..media import to_uint8
from . import PretrainedModel, resolve_pretrained, unloadable_folder_message

# The diffusers fp16 files only (about 4.3 GB): the repos also hold single-file checkpoints (about 19 GB more).
SVD_FILES = ("model_index.json", "*/*.json", "*/*.fp16.safetensors")


def _model(name: str, repo: str) -> PretrainedModel:
    licence = f"Stable Video Diffusion Community License ({repo} on Hugging Face; accept it there)"
    return PretrainedModel(name, repo, "video.model", licence, files=SVD_FILES)


# img2vid makes 14 frames by default, img2vid-xt 25; both take any `num_frames`.
SVD_MODELS = {
    "svd": _model("Stable Video Diffusion", "stabilityai/stable-video-diffusion-img2vid"),
    "svd_xt": _model("Stable Video Diffusion XT", "stabilityai/stable-video-diffusion-img2vid-xt"),
}
DEFAULT_SVD = SVD_MODELS["svd"]  # DreamGaussian4D's gen_vid.py loads img2vid


def svd_weights(location: str | None = None) -> PretrainedModel:
    """The weights `video.model=location` names: a known hub repo, another repo id or a local directory."""
    if not location:
        return DEFAULT_SVD
    known = [model for model in SVD_MODELS.values() if model.location == location]
    return known[0] if known else replace(DEFAULT_SVD, location=str(location))


def load_svd(
    location: str | None,
    device: torch.device,
    local_only: bool = False,
    *,
    cpu_offload: bool = False,
    forward_chunking: bool = False,
):
    """A `StableVideoDiffusionPipeline` on `device`, in fp16 on CUDA and fp32 on CPU.

    `cpu_offload` keeps each model on the CPU until its turn (image encoder, UNet, VAE), which
    needs an accelerator and is ignored without one; `forward_chunking` runs the UNet's
    feed-forward layers in chunks. Both trade speed for memory.
    """
    from diffusers import StableVideoDiffusionPipeline

    directory = resolve_pretrained(svd_weights(location), local_only)
    dtype = torch.float16 if device.type == "cuda" else torch.float32  # fp16 is slow on CPU
    # The hub repos ship both precisions and a copy may hold only the fp16 files (half the download):
    # take those when present, whatever the dtype; they are what runs on a GPU anyway.
    variant = "fp16" if any(directory.glob("*/*.fp16.*")) else None
    try:
        # `dtype=` needs diffusers >= 0.40 (pinned): older ones drop it and load fp32 even on a GPU.
        pipe = StableVideoDiffusionPipeline.from_pretrained(directory, dtype=dtype, variant=variant)
    except Exception as error:  # diffusers', safetensors' or the config readers' errors
        reason = first_line(error)
        if not (directory / "model_index.json").is_file():
            raise DynaPoseError(
                f"video.model={str(directory)!r} is not a Stable Video Diffusion model: {reason}"
            ) from None
        raise DynaPoseError(unloadable_folder_message("Stable Video Diffusion", directory, reason)) from None
    place(pipe, device, cpu_offload=cpu_offload, forward_chunking=forward_chunking)
    pipe.set_progress_bar_config(desc="Stable Video Diffusion")
    return pipe


def place(pipe, device: torch.device, *, cpu_offload: bool = False, forward_chunking: bool = False) -> None:
    """Put the pipeline on `device`, with the memory options of `load_svd`."""
    if forward_chunking:
        pipe.unet.enable_forward_chunking()
    if cpu_offload and device.type != "cpu":  # accelerate's offload refuses to run without an accelerator
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)


def release(pipe) -> None:
    """Free the pipeline's models now, so the next stage can load its own into the memory.

    The pipeline is an empty shell afterwards: its components are set to None, which frees
    them even while the caller still holds `pipe`.
    """
    pipe.remove_all_hooks()  # the offload hooks hold references to the models
    for name in list(pipe.components):
        setattr(pipe, name, None)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextlib.contextmanager
def svd_pipeline(location: str | None, device: torch.device, local_only: bool = False, **options) -> Iterator:
    """`load_svd(...)` for the duration of a `with` block, released at its end (errors included)."""
    pipe = load_svd(location, device, local_only, **options)
    try:
        yield pipe
    finally:
        release(pipe)


def size_multiple(pipe) -> int:
    """Heights and widths must be multiples of this: the VAE's and then the UNet's downsampling (64 for SVD)."""
    return pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1)


def pad_to_width(picture: Image.Image, width: int) -> tuple[Image.Image, int]:
    """Pad a square image left and right to `width` with its top-left pixel's colour; also the left offset."""
    canvas = Image.new("RGB", (width, picture.height), picture.getpixel((0, 0)))
    left = (width - picture.width) // 2
    canvas.paste(picture, (left, 0))
    return canvas, left


def generate_driving_video(
    pipe,
    image: torch.Tensor,  # [S, S, 3] in [0, 1], already composited on the background
    *,
    num_frames: int | None = None,
    steps: int = 25,
    fps: int = 7,
    motion_bucket_id: int = 127,
    noise_aug_strength: float = 0.02,
    decode_chunk_size: int | None = None,
    seed: int = 0,
    height: int = 512,
    width: int = 1024,
    pad: bool = False,
) -> torch.Tensor:
    """The video [F, height, height, 3] in [0, 1] that SVD animates `image` into.

    The video is square, `height` on a side. With `pad` it is generated at height x width and
    cropped back; without, `width` is unused. `num_frames=None` takes the model's own (14 for
    img2vid, 25 for img2vid-xt); `decode_chunk_size` frames are decoded at a time (None: all,
    the most memory, and no seam in the temporal VAE between chunks). The noise comes from a
    CPU generator seeded with `seed`, as gen_vid.py's `torch.manual_seed(seed)`, so a seed
    gives the same video on any device and with or without offloading.
    """
    if image.ndim != 3 or image.shape[-1] != 3 or image.shape[0] != image.shape[1]:
        raise ValueError(f"expected a square RGB image [S, S, 3], got shape {tuple(image.shape)}")
    multiple = size_multiple(pipe)
    if height % multiple or (pad and (width % multiple or width < height)):
        shape = f"{height}x{width}" if pad else f"{height}x{height}"
        raise DynaPoseError(
            f"Stable Video Diffusion needs a height and width that are multiples of {multiple} "
            f"(and a padded width no smaller than the height); got {shape}"
        )
    picture = Image.fromarray(to_uint8(image)).resize((height, height), Image.Resampling.LANCZOS)
    left = 0
    if pad:
        picture, left = pad_to_width(picture, width)
    num_frames = num_frames or pipe.unet.config.num_frames
    frames = pipe(
        picture,
        height=height,
        width=picture.width,
        num_frames=num_frames,
        num_inference_steps=steps,
        fps=fps,
        motion_bucket_id=motion_bucket_id,
        noise_aug_strength=noise_aug_strength,
        decode_chunk_size=decode_chunk_size,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="pt",
    ).frames  # [1, F, 3, height, width]
    video = frames[0, :, :, :, left : left + height].permute(0, 2, 3, 1)  # [F, height, height, 3]
    return video.float().clamp(0, 1).cpu()
