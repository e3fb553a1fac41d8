"""Zero-1-to-3 / Stable Zero123 in diffusers format, loaded component by component.

The hub repos (ashawkey/zero123-xl-diffusers, ashawkey/stable-zero123-diffusers) name a
custom `zero123.CLIPCameraProjection` class that diffusers can only load with remote code.
We load each standard component with `subfolder=` and the camera projection with our own
class of the same layout (`proj`: Linear(D + 4 -> D)), so no remote code ever runs. The
older kxic format calls that component `cc_projection` with keys `projection.*`; it is
accepted too.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

from ..errors import DynaPoseError, first_line
from . import unloadable_folder_message

PROJECTION_FOLDERS = ("clip_camera_projection", "cc_projection")
STANDARD_FOLDERS = ("unet", "vae", "image_encoder", "feature_extractor", "scheduler")


class CLIPCameraProjection(ModelMixin, ConfigMixin):
    """Maps [CLIP image embedding ; camera vector] to the UNet's cross-attention token."""

    @register_to_config
    def __init__(self, embedding_dim: int = 768, additional_embeddings: int = 4):
        super().__init__()
        self.proj = torch.nn.Linear(embedding_dim + additional_embeddings, embedding_dim)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:  # [..., D + 4] -> [..., D]
        return self.proj(embedding)


@dataclass
class Zero123Components:
    unet: UNet2DConditionModel
    vae: AutoencoderKL
    image_encoder: CLIPVisionModelWithProjection
    feature_extractor: CLIPImageProcessor
    scheduler: DDIMScheduler
    projection: CLIPCameraProjection

    @property
    def image_size(self) -> int:
        """The render size the model was trained at: latent size x the VAE's downsampling (32 x 8 = 256)."""
        return self.unet.config.sample_size * 2 ** (len(self.vae.config.block_out_channels) - 1)

    def frozen(self, device: torch.device) -> "Zero123Components":
        """Evaluation mode, no parameter gradients, on `device`."""
        for module in (self.unet, self.vae, self.image_encoder, self.projection):
            module.to(device).eval().requires_grad_(False)
        return self


def load_zero123(directory: Path, device: torch.device, dtype: torch.dtype) -> Zero123Components:
    """Every component of the diffusers-format repo in `directory`, frozen, on `device` in `dtype`."""
    directory = Path(directory)
    missing = [name for name in STANDARD_FOLDERS if not (directory / name).is_dir()]
    projection_folder = next((name for name in PROJECTION_FOLDERS if (directory / name).is_dir()), None)
    if projection_folder is None:
        missing.append(" or ".join(PROJECTION_FOLDERS))
    if missing:
        raise DynaPoseError(f"{directory} is not a diffusers Zero123 repo: no {', '.join(missing)} folder")
    try:
        components = Zero123Components(
            unet=UNet2DConditionModel.from_pretrained(directory, subfolder="unet", dtype=dtype),
            vae=AutoencoderKL.from_pretrained(directory, subfolder="vae", dtype=dtype),
            image_encoder=CLIPVisionModelWithProjection.from_pretrained(
                directory, subfolder="image_encoder", dtype=dtype
            ),
            feature_extractor=CLIPImageProcessor.from_pretrained(directory, subfolder="feature_extractor"),
            scheduler=DDIMScheduler.from_pretrained(directory, subfolder="scheduler"),
            projection=_load_projection(directory / projection_folder, dtype),
        )
    except DynaPoseError:
        raise
    except Exception as error:  # a truncated or damaged file: safetensors', torch's or the config readers' errors
        raise DynaPoseError(unloadable_folder_message("Zero123", directory, first_line(error))) from None
    width = components.projection.config.embedding_dim
    if components.unet.config.cross_attention_dim != width or components.image_encoder.config.projection_dim != width:
        raise DynaPoseError(
            f"{directory}: the camera projection ({width}), CLIP projection "
            f"({components.image_encoder.config.projection_dim}) and UNet cross-attention "
            f"({components.unet.config.cross_attention_dim}) widths must agree"
        )
    return components.frozen(device)


def _load_projection(folder: Path, dtype: torch.dtype) -> CLIPCameraProjection:
    if folder.name == "clip_camera_projection":
        return CLIPCameraProjection.from_pretrained(folder, dtype=dtype)
    # kxic's cc_projection: no dimensions in its config, weights under `projection.*`.
    state = {key.replace("projection.", "proj.", 1): value for key, value in _read_weights(folder).items()}
    width = state["proj.weight"].shape[0]
    projection = CLIPCameraProjection(width, state["proj.weight"].shape[1] - width)
    projection.load_state_dict(state)
    return projection.to(dtype)


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    weights = folder / "diffusion_pytorch_model"
    if weights.with_suffix(".safetensors").exists():
        from safetensors.torch import load_file

        return load_file(weights.with_suffix(".safetensors"))
    if weights.with_suffix(".bin").exists():
        return torch.load(weights.with_suffix(".bin"), map_location="cpu", weights_only=True)
    raise DynaPoseError(f"{folder}: no diffusion_pytorch_model.safetensors or .bin")


def write_model_index(directory: Path, projection_folder: str = "clip_camera_projection") -> None:
    """model_index.json as the hub repos have it (the projection names the remote-code class)."""
    index = {
        "_class_name": "Zero123Pipeline",
        "feature_extractor": ["transformers", "CLIPImageProcessor"],
        "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        projection_folder: ["zero123", "CLIPCameraProjection"],
    }
    (Path(directory) / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
