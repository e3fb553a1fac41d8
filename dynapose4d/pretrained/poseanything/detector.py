"""PoseAnything as a keypoint detector: the support image is encoded once, frames are batched."""

import torch
from torch import Tensor

from .model import CapeModel
from .preprocess import resize_pad, support_heatmaps


class CapeDetector:
    """A `dynapose4d.keypoints.KeypointDetector`: RGB frames [B, H, W, 3] -> keypoints [B, N, 2] in their pixels.

    Differentiable with respect to the frames (KML on rendered frames); the model itself is frozen.
    """

    def __init__(
        self,
        model: CapeModel,
        support_image: Tensor,  # [H, W, 3] RGB in [0, 1]
        support_points: Tensor,  # [N, 2] pixels of `support_image`
        skeleton: list[tuple[int, int]],
    ):
        self.model = model.eval().requires_grad_(False)
        self.num_keypoints = len(support_points)
        parameter = next(model.parameters())
        # Each variant has its own input side (Small/Tiny 256, Base 224); support and queries use it. The
        # heatmap grid is 64 for all, so the stride (size / 64) is the variant's too: 4, Base 3.5.
        self.size = model.input_size
        image, frame = resize_pad(support_image.permute(2, 0, 1).to(parameter), self.size)
        points = frame.to_network(support_points.to(parameter))  # [N, 2]
        visible = torch.ones_like(points[:, 0])  # [N]
        heatmaps, kept = support_heatmaps(points, visible, size=self.size, heatmap_size=model.heatmap_size)  # [N, M, M]
        with torch.no_grad():
            self.support = model.encode_support(image[None], heatmaps[None], kept[None], skeleton)

    def __call__(self, images: Tensor) -> Tensor:
        parameter = next(self.model.parameters())
        queries, frame = resize_pad(images.permute(0, 3, 1, 2).to(parameter), self.size)  # [B, 3, S, S]
        return frame.to_image(self.model.predict(queries, self.support) * self.size)  # [B, N, 2]

    def detect(self, images: Tensor, batch_size: int) -> Tensor:
        """Keypoints [T, N, 2] of many frames [T, H, W, 3], `batch_size` at a time, without gradients."""
        with torch.no_grad():
            return torch.cat([self(images[start : start + batch_size]) for start in range(0, len(images), batch_size)])
