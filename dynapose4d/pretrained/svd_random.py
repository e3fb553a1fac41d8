"""Randomly initialised Stable Video Diffusion in the real architecture or a tiny one.

Tests load the tiny set through `load_svd` from the hub repos' on-disk layout; it takes the
production path (PIL input, CLIP at 224, VAE downsampling by 8). The benchmark times the
full-size set, whose shapes are img2vid-xt's: spatio-temporal UNet, temporal-decoder VAE,
CLIP ViT-H/14 image tower.
"""

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLTemporalDecoder,
    EulerDiscreteScheduler,
    StableVideoDiffusionPipeline,
    UNetSpatioTemporalConditionModel,
)
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

# The real scheduler (Euler, v-prediction, Karras sigmas), shared by both sizes.
SCHEDULER = dict(
    beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", trained_betas=None, num_train_timesteps=1000,
    interpolation_type="linear", sigma_max=700.0, sigma_min=0.002, use_karras_sigmas=True,
    prediction_type="v_prediction", steps_offset=1, timestep_spacing="leading", timestep_type="continuous",
)  # fmt: skip

ARCHITECTURES = {
    # CLIP's projection width is the UNet's cross-attention width; the UNet's added-time
    # projection takes the 3 micro-conditions (fps, motion bucket, noise) x addition_time_embed_dim.
    "tiny": dict(
        unet=dict(
            block_out_channels=(32, 64), layers_per_block=2, sample_size=32, num_attention_heads=8,
            cross_attention_dim=32, addition_time_embed_dim=32, projection_class_embeddings_input_dim=96,
            down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
            up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
            num_frames=14,  # img2vid's default length, so "the model's own" differs from diffusers' 25
        ),
        vae=dict(block_out_channels=(32,) * 4, down_block_types=("DownEncoderBlock2D",) * 4, layers_per_block=1),
        clip=dict(
            hidden_size=32, projection_dim=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
            image_size=224, patch_size=32,
        ),
    ),
    "full": dict(
        unet=dict(),  # diffusers' defaults are img2vid-xt's UNet
        vae=dict(
            block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4, layers_per_block=2,
            sample_size=768,
        ),
        clip=dict(
            hidden_size=1280, projection_dim=1024, intermediate_size=5120, num_attention_heads=16, num_hidden_layers=32,
            image_size=224, patch_size=14, hidden_act="gelu", layer_norm_eps=1e-5,
        ),
    ),
}  # fmt: skip


def random_svd(
    size: str = "tiny", seed: int = 0, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> StableVideoDiffusionPipeline:
    """A randomly initialised pipeline of the `size` architecture ("tiny" or "full"), built on `device`.

    Building on the GPU directly spares the full set's ~9 GB of fp32 CPU memory and slow CPU init.
    """
    spec = ARCHITECTURES[size]
    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNetSpatioTemporalConditionModel(**spec["unet"])
        vae = AutoencoderKLTemporalDecoder(in_channels=3, out_channels=3, latent_channels=4, **spec["vae"])
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**spec["clip"]))
    pipe = StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=image_encoder,
        unet=unet,
        scheduler=EulerDiscreteScheduler(**SCHEDULER),
        # SVD only normalises with it (its own resize does the rest); SVD's has CLIP's OpenAI mean/std.
        feature_extractor=CLIPImageProcessor(crop_size=224, size=224),
    )
    return pipe if dtype == torch.float32 else pipe.to(dtype=dtype)  # the models are built in fp32


def write_random_svd(directory: str | Path, size: str = "tiny", seed: int = 0, variant: str | None = None) -> Path:
    """Save a random set in the hub repos' layout (model_index.json + one folder per component).

    `variant="fp16"` names the weight files `*.fp16.*`, like the repos' half-precision copies.
    """
    directory = Path(directory)
    random_svd(size, seed).save_pretrained(directory, variant=variant)
    return directory
