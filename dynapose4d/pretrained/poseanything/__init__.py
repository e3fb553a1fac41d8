"""PoseAnything (Hirschorn & Avidan, ECCV 2024), category-agnostic pose estimation in plain PyTorch.

Given one support image with K annotated keypoints and a skeleton, it predicts the same K keypoints
on query images of the same category. It loads the official Small/Tiny checkpoints and the older
Base one (github.com/orhir/PoseAnything) strictly, the variant read from the tensor shapes; no
mmcv/mmpose needed.

    model = load_cape_checkpoint(path)                       # or build_cape("small") for random weights
    size = model.input_size                                  # 256 (Small/Tiny) or 224 (Base)
    # Support heatmaps are 64x64 for every variant (model.heatmap_size): stride 4, Base 3.5.
    support, frame = resize_pad(support_rgb, size)           # [3, size, size], PadResize
    heatmaps, kept = support_heatmaps(frame.to_network(points), visible, size=size, heatmap_size=model.heatmap_size)
    state = model.encode_support(support[None], heatmaps[None], kept[None], skeleton)
    queries, query_frame = resize_pad(frames_rgb, size)      # [B, 3, size, size]
    keypoints = query_frame.to_image(model.predict(queries, state) * size)  # [B, K, 2] pixels
"""

from .. import PretrainedModel
from .detector import CapeDetector
from .model import (
    VARIANTS,
    CapeModel,
    CapePrediction,
    CapeVariant,
    SupportState,
    build_cape,
    cape_from_state_dict,
    load_cape_checkpoint,
    variant_of,
)
from .preprocess import HEATMAP_SIZE, NETWORK_SIZE, PadResize, heatmap_centres, resize_pad, support_heatmaps
from .transformer import adjacency_from_skeleton

__all__ = [
    "CapeDetector",
    "HEATMAP_SIZE",
    "NETWORK_SIZE",
    "VARIANTS",
    "CapeModel",
    "CapePrediction",
    "CapeVariant",
    "PadResize",
    "SupportState",
    "adjacency_from_skeleton",
    "build_cape",
    "cape_from_state_dict",
    "heatmap_centres",
    "load_cape_checkpoint",
    "resize_pad",
    "support_heatmaps",
    "variant_of",
]

# The project's 1.0.0 release asset: a direct URL, so the default needs no manual step. It may be the
# pre-February-2024 SwinV2-B/224 model rather than today's Small; the loader reads which from the shapes.
POSEANYTHING_RELEASE = "https://github.com/orhir/PoseAnything/releases/download/1.0.0/demo_b.pth"
POSEANYTHING_DOWNLOAD = (
    f"{POSEANYTHING_RELEASE}, or (as a local path) a Google-Drive model from the PoseAnything README, e.g. the "
    "1-shot Swin 'Small' split 1: https://drive.google.com/file/d/1RT1Q8AMEa1kj6k9ZqrtWIKyuR4Jn4Pqc"
)


def poseanything_weights(checkpoint: str | None) -> PretrainedModel:
    """`keypoints.checkpoint`: a local file, or a URL that is downloaded once into torch hub's cache."""
    return PretrainedModel(
        "PoseAnything", checkpoint, "keypoints.checkpoint", "Apache-2.0", download=POSEANYTHING_DOWNLOAD
    )
