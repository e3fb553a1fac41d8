"""Randomly initialised Zero123 components in the real architecture or a tiny one.

Tests load the tiny set through the same loader as the real weights (written in the hub
repos' layout); the benchmark times the full-size set, whose shapes are the real
models' (SD-1.x UNet with 8 input channels, SD VAE, CLIP ViT-L/14 image tower).
"""

from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

from .zero123 import CLIPCameraProjection, Zero123Components, write_model_index

# The real scheduler (DDIM over SD's scaled-linear betas), shared by both sizes.
SCHEDULER = dict(
    beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
    prediction_type="epsilon", clip_sample=False, set_alpha_to_one=False, steps_offset=1,
)  # fmt: skip

ARCHITECTURES = {
    "tiny": dict(
        width=32,
        unet=dict(
            block_out_channels=(32, 64),
            layers_per_block=1,
            sample_size=32,
            attention_head_dim=8,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        ),
        vae=dict(
            block_out_channels=(8, 8, 8, 8),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=1,
            norm_num_groups=4,
            sample_size=256,
        ),
        clip=dict(
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            image_size=32,
            patch_size=4,
        ),
    ),  # fmt: skip
    "full": dict(
        width=768,
        unet=dict(
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            sample_size=32,
            attention_head_dim=8,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        ),
        vae=dict(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=2,
            sample_size=256,
        ),
        clip=dict(
            hidden_size=1024,
            intermediate_size=4096,
            num_attention_heads=16,
            num_hidden_layers=24,
            image_size=224,
            patch_size=14,
            hidden_act="quick_gelu",
        ),
    ),  # fmt: skip
}


def random_zero123(size: str = "tiny", seed: int = 0) -> Zero123Components:
    """Randomly initialised components of the `size` architecture ("tiny" or "full")."""
    spec = ARCHITECTURES[size]
    width = spec["width"]
    torch.manual_seed(seed)
    clip_size = spec["clip"]["image_size"]
    return Zero123Components(
        unet=UNet2DConditionModel(in_channels=8, out_channels=4, cross_attention_dim=width, **spec["unet"]),
        vae=AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, scaling_factor=0.18215, **spec["vae"]),
        image_encoder=CLIPVisionModelWithProjection(CLIPVisionConfig(projection_dim=width, **spec["clip"])),
        feature_extractor=CLIPImageProcessor(size={"shortest_edge": clip_size}, crop_size=clip_size),
        scheduler=DDIMScheduler(**SCHEDULER),
        projection=CLIPCameraProjection(embedding_dim=width, additional_embeddings=4),
    )


def write_random_zero123(
    directory: Path,
    size: str = "tiny",
    seed: int = 0,
    projection_folder: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Save a random set in the hub repos' on-disk layout (model_index.json + one folder per component).

    `projection_folder="cc_projection"` writes the older kxic layout instead (keys `projection.*`).
    """
    directory = Path(directory)
    components = random_zero123(size, seed)
    for module in (components.unet, components.vae, components.image_encoder, components.projection):
        module.to(dtype)
    for name in ("unet", "vae", "image_encoder", "feature_extractor", "scheduler"):
        getattr(components, name).save_pretrained(directory / name)
    if projection_folder == "cc_projection":
        from safetensors.torch import save_file

        folder = directory / "cc_projection"
        folder.mkdir(parents=True, exist_ok=True)
        state = components.projection.state_dict()
        state = {key.replace("proj.", "projection.", 1): value for key, value in state.items()}
        save_file(state, folder / "diffusion_pytorch_model.safetensors")
        (folder / "config.json").write_text('{"_class_name": "CCProjection"}\n')
    else:
        components.projection.save_pretrained(directory / "clip_camera_projection")
    write_model_index(directory, projection_folder or "clip_camera_projection")
    return directory
