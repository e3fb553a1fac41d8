"""CLIP image similarity: the cosine of CLIP image embeddings (Consistent4D's "CLIP" column)."""

from dataclasses import dataclass

import torch

from ..errors import DynaPoseError
from ..media import to_uint8
from . import PretrainedModel, resolve_pretrained

# What compute_image_level_metrics.py loads; its scores are raw cosines (about 0.87-0.95), not x100.
CLIP_BENCHMARK_MODEL = "openai/clip-vit-base-patch32"


def clip_weights(location: str = CLIP_BENCHMARK_MODEL) -> PretrainedModel:
    return PretrainedModel(
        name="CLIP",
        location=location,
        config_key="eval.clip_model",
        licence="MIT (OpenAI CLIP)",
        files=("*.json", "*.txt", "model.safetensors", "pytorch_model.bin"),
    )


@dataclass(frozen=True)
class Clip:
    model: torch.nn.Module  # transformers CLIPModel
    processor: object  # CLIP image processor (PIL backend)


def load_clip(location: str = CLIP_BENCHMARK_MODEL, device="cpu", local_only: bool = False) -> Clip:
    """CLIPModel and its image processor from a local directory or a hub id (DynaPoseError if unavailable)."""
    from transformers import CLIPModel

    try:  # transformers >= 5 names the PIL processor this; the plain name became torchvision-based
        from transformers import CLIPImageProcessorPil as ImageProcessor
    except ImportError:  # transformers 4: the plain name is the PIL processor
        from transformers import CLIPImageProcessor as ImageProcessor

    directory = resolve_pretrained(clip_weights(location), local_only=local_only)
    try:
        processor = ImageProcessor.from_pretrained(directory)
        model = CLIPModel.from_pretrained(directory)
    except OSError as error:
        raise DynaPoseError(f"eval.clip_model={location!r}: not a CLIP model directory ({error})") from None
    return Clip(model.eval().to(device), processor)


def clip_embeddings(clip: Clip, images: torch.Tensor) -> torch.Tensor:
    """CLIP image embeddings [N, D] of images [N, H, W, 3] in [0, 1].

    The processor gets 8-bit pixels, as it gets PIL images in the benchmark script, so its PIL
    bicubic resize to 224 and centre crop see the same input.
    """
    pixels = list(to_uint8(images))
    inputs = clip.processor(images=pixels, return_tensors="pt", input_data_format="channels_last")
    device = next(clip.model.parameters()).device
    with torch.no_grad():
        features = clip.model.get_image_features(pixel_values=inputs["pixel_values"].to(device))
    if not isinstance(features, torch.Tensor):  # transformers >= 5 returns the output object
        features = features.pooler_output
    return features.float()


def clip_similarity(clip: Clip, images: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean cosine between the CLIP embeddings of images [N, H, W, 3] and reference [H, W, 3]
    (one image for all) or [N, H, W, 3] (frame by frame)."""
    embeddings = clip_embeddings(clip, images)  # [N, D]
    references = clip_embeddings(clip, reference[None] if reference.dim() == 3 else reference)  # [1 or N, D]
    return torch.nn.functional.cosine_similarity(embeddings, references, dim=-1).mean().item()
