"""PoseAnything (Hirschorn & Avidan, ECCV 2024), category-agnostic pose estimation in plain PyTorch.

Given one support image with K annotated keypoints and a skeleton, it predicts the same K keypoints
on query images of the same category. It loads the official Small/Tiny checkpoints
(github.com/orhir/PoseAnything) strictly; no mmcv/mmpose needed.

    model = load_cape_checkpoint(path)                       # or build_cape("small") for random weights
    support, frame = resize_pad(support_rgb)                 # [3, 256, 256], PadResize
    heatmaps, kept = support_heatmaps(frame.to_network(points), visible)
    state = model.encode_support(support[None], heatmaps[None], kept[None], skeleton)
    queries, query_frame = resize_pad(frames_rgb)            # [B, 3, 256, 256]
    keypoints = query_frame.to_image(model.predict(queries, state) * NETWORK_SIZE)  # [B, K, 2] pixels
"""

from .detector import CapeDetector
from .model import (
    SIZES,
    CapeModel,
    CapePrediction,
    SupportState,
    build_cape,
    cape_from_state_dict,
    load_cape_checkpoint,
)
from .preprocess import HEATMAP_SIZE, NETWORK_SIZE, PadResize, resize_pad, support_heatmaps
from .transformer import adjacency_from_skeleton

__all__ = [
    "CapeDetector",
    "HEATMAP_SIZE",
    "NETWORK_SIZE",
    "SIZES",
    "CapeModel",
    "CapePrediction",
    "PadResize",
    "SupportState",
    "adjacency_from_skeleton",
    "build_cape",
    "cape_from_state_dict",
    "load_cape_checkpoint",
    "resize_pad",
    "support_heatmaps",
]
