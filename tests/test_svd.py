"""Stable Video Diffusion as the driving-video generator, with tiny random weights in the hub layout."""

import inspect
import weakref

import pytest
import torch
from conftest import compose_config
from diffusers import StableVideoDiffusionPipeline
from PIL import Image

from dynapose4d.errors import DynaPoseError
from dynapose4d.pretrained.svd import (
    DEFAULT_SVD,
    SVD_MODELS,
    generate_driving_video,
    load_svd,
    pad_to_width,
    release,
    svd_pipeline,
    svd_weights,
)
from dynapose4d.pretrained.svd_random import write_random_svd

CPU = torch.device("cpu")
FAST = dict(steps=2, height=32, width=32)  # the tiny model needs multiples of 16


@pytest.fixture(scope="module")
def tiny_svd(tiny_svd_dir):
    return load_svd(str(tiny_svd_dir), CPU)


def reference(size=80):
    """An orange disc on white, composited: what the video stage feeds SVD."""
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    inside = ((y - size / 2) ** 2 + (x - size / 2) ** 2 < (size / 3) ** 2)[..., None]
    return torch.where(inside, torch.tensor([0.9, 0.5, 0.1]), torch.ones(3))


def test_generates_the_requested_frames_in_range(tiny_svd):
    video = generate_driving_video(tiny_svd, reference(), num_frames=3, **FAST)
    assert video.shape == (3, 32, 32, 3) and video.dtype == torch.float32
    assert video.min() >= 0 and video.max() <= 1 and video.std() > 0


def test_without_num_frames_the_model_sets_the_length(tiny_svd):
    assert len(generate_driving_video(tiny_svd, reference(), **FAST)) == tiny_svd.unet.config.num_frames == 14


def test_padded_generation_is_cropped_back_to_a_square(tiny_svd):
    video = generate_driving_video(tiny_svd, reference(), num_frames=2, steps=2, height=32, width=64, pad=True)
    assert video.shape == (2, 32, 32, 3)


def test_padding_uses_the_corner_colour_and_centres_the_image():
    square = Image.new("RGB", (4, 4), (10, 20, 30))
    square.putpixel((2, 2), (200, 0, 0))
    padded, left = pad_to_width(square, 10)
    assert padded.size == (10, 4) and left == 3
    assert padded.getpixel((0, 0)) == padded.getpixel((9, 3)) == (10, 20, 30)
    assert padded.getpixel((5, 2)) == (200, 0, 0)


def test_a_seed_reproduces_the_video_and_another_seed_changes_it(tiny_svd):
    first, again, other = (
        generate_driving_video(tiny_svd, reference(), num_frames=2, seed=seed, **FAST) for seed in (3, 3, 4)
    )
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert (first - other).abs().max() > 1e-3


def test_sizes_the_unet_cannot_take_are_refused(tiny_svd):
    with pytest.raises(DynaPoseError, match="multiples of 16"):
        generate_driving_video(tiny_svd, reference(), num_frames=2, steps=2, height=60, width=60)
    with pytest.raises(DynaPoseError, match="no smaller than the height"):
        generate_driving_video(tiny_svd, reference(), num_frames=2, steps=2, height=64, width=48, pad=True)


def test_a_copy_with_only_the_fp16_files_loads(tmp_path, tiny_svd):
    directory = write_random_svd(tmp_path / "fp16", variant="fp16")  # same seed, so the same weights
    assert not list(directory.glob("unet/*model.safetensors"))
    pipe = load_svd(str(directory), CPU)
    assert pipe.unet.dtype == torch.float32  # fp32 on CPU whatever the files hold
    torch.testing.assert_close(pipe.unet.conv_in.weight, tiny_svd.unet.conv_in.weight)


def test_memory_options_work_on_a_machine_without_a_gpu(tiny_svd_dir):
    pipe = load_svd(str(tiny_svd_dir), CPU, cpu_offload=True, forward_chunking=True)  # offload is skipped on CPU
    assert generate_driving_video(pipe, reference(), num_frames=2, **FAST).shape == (2, 32, 32, 3)


def test_offline_without_a_local_copy_names_the_key_the_repo_and_the_licence(offline_hub):
    with pytest.raises(DynaPoseError) as error:
        load_svd(DEFAULT_SVD.location, CPU)
    message = str(error.value)
    assert "video.model=" in message and DEFAULT_SVD.location in message
    assert "Stable Video Diffusion Community License" in message


def test_a_directory_that_is_not_svd_is_refused(tmp_path):
    with pytest.raises(DynaPoseError, match="video.model=.*is not a Stable Video Diffusion model"):
        load_svd(str(tmp_path), CPU)


def test_a_damaged_download_is_named_with_how_to_fetch_it_again(tiny_svd_dir, tmp_path):
    import shutil

    copy = shutil.copytree(tiny_svd_dir, tmp_path / "svd")
    weights = next((copy / "unet").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])  # cut short, as an interrupted copy leaves it
    with pytest.raises(DynaPoseError, match=f"cannot load Stable Video Diffusion from {copy} .*delete that folder"):
        load_svd(str(copy), CPU)


def test_weights_named_by_location():
    assert svd_weights(None) is DEFAULT_SVD and DEFAULT_SVD.location == "stabilityai/stable-video-diffusion-img2vid"
    assert svd_weights(SVD_MODELS["svd_xt"].location) is SVD_MODELS["svd_xt"]
    local = svd_weights("/data/svd")
    assert local.location == "/data/svd" and local.config_key == "video.model"


def test_release_frees_the_models_even_while_the_pipeline_is_held(tiny_svd_dir):
    with svd_pipeline(str(tiny_svd_dir), CPU) as pipe:
        unet = weakref.ref(pipe.unet)
        image_encoder = weakref.ref(pipe.image_encoder)
    assert unet() is None and image_encoder() is None
    assert pipe.unet is None and pipe.vae is None
    release(pipe)  # a second release is harmless


def test_the_defaults_are_dreamgaussian4d_s():
    """DreamGaussian4D's scripts/gen_vid.py: `StableVideoDiffusionPipeline.from_pretrained(
    "stabilityai/stable-video-diffusion-img2vid", ...)`, `height, width = 512, 512` (its `--is_pad`
    branch is off by default) and `pipe(image, height, width, generator=torch.manual_seed(seed))`,
    so every other setting is diffusers' default; mp4s at fps=7."""
    video = compose_config([]).video
    assert video.model == "stabilityai/stable-video-diffusion-img2vid" and video.num_frames == 14
    assert (video.height, video.pad) == (512, False)
    assert (video.steps, video.fps, video.motion_bucket_id, video.noise_aug_strength) == (25, 7, 127, 0.02)
    assert video.decode_chunk_size is None  # diffusers: None decodes all num_frames at once
    assert video.candidates == 1 and video.mask == "auto"  # rembg on every frame, as DreamGaussian4D's main_4d.py
    assert video.seed is None  # the run's seed (gen_vid.py's has no default: its authors try several)
    diffusers_defaults = inspect.signature(StableVideoDiffusionPipeline.__call__).parameters
    names = {"steps": "num_inference_steps", "fps": "fps", "motion_bucket_id": "motion_bucket_id",
             "noise_aug_strength": "noise_aug_strength", "decode_chunk_size": "decode_chunk_size"}  # fmt: skip
    for ours, theirs in names.items():
        assert video[ours] == diffusers_defaults[theirs].default, ours
    ours = inspect.signature(generate_driving_video).parameters
    assert (ours["height"].default, ours["pad"].default, ours["decode_chunk_size"].default) == (512, False, None)


def test_all_frames_are_decoded_at_once_by_default(tiny_svd, monkeypatch):
    decoded = []
    decode = tiny_svd.vae.decode

    def spy(latents, **options):
        decoded.append(options["num_frames"])
        return decode(latents, **options)

    monkeypatch.setattr(tiny_svd.vae, "decode", spy)
    generate_driving_video(tiny_svd, reference(), num_frames=3, **FAST)
    assert decoded == [3]  # one call: no chunk borders for the temporal decoder to seam
    decoded.clear()
    generate_driving_video(tiny_svd, reference(), num_frames=3, decode_chunk_size=2, **FAST)
    assert decoded == [2, 1]
