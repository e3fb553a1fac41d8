"""PoseAnything support heatmaps per variant: the 64x64 grid, the official peak cell, the pooling footprint.

The official configs pair every input side with `heatmap_size=[64, 64]` (configs/demo_b.py: Base 224,
Small 256), and `TopDownGenerateTargetFewShot` centres a keypoint's Gaussian on
`int(point / (image_size / heatmap_size) + 0.5)`: stride 4 for Small/Tiny, 3.5 for Base.
"""

import math
from dataclasses import replace

import pytest
import torch
from torch import Tensor, nn

from dynapose4d.pretrained.poseanything import VARIANTS, CapeDetector, CapeModel, support_heatmaps

# Input side and heatmap stride of each variant, from the official configs (not from our code).
OFFICIAL = {"tiny": (256, 4.0), "small": (256, 4.0), "base": (224, 3.5)}


def reference_heatmaps(points: list, visible: list, size: int, cells: int = 64, sigma: int = 1):
    """The official MSRA generator, loop for loop: a (6 sigma + 1)^2 Gaussian pasted around the rounded centre.

    points: K (x, y) network pixels, visible: K 0/1 -> (K heatmaps as cells x cells nested lists, K weights).
    """
    stride, radius = size / cells, 3 * sigma
    kernel = [
        [math.exp(-((i - radius) ** 2 + (j - radius) ** 2) / (2 * sigma**2)) for j in range(2 * radius + 1)]
        for i in range(2 * radius + 1)
    ]
    maps, weights = [], []
    for (x, y), weight in zip(points, visible):
        target = [[0.0] * cells for _ in range(cells)]
        mu_x, mu_y = int(x / stride + 0.5), int(y / stride + 0.5)
        left, top, right, bottom = mu_x - radius, mu_y - radius, mu_x + radius + 1, mu_y + radius + 1
        if left >= cells or top >= cells or right < 0 or bottom < 0:
            weight = 0
        if weight > 0.5:
            for row in range(max(0, top), min(bottom, cells)):
                for col in range(max(0, left), min(right, cells)):
                    target[row][col] = kernel[row - top][col - left]
        maps.append(target)
        weights.append(float(weight))
    return maps, weights


def test_every_variant_pools_on_a_64_grid():
    assert set(VARIANTS) == set(OFFICIAL)
    for name, (size, stride) in OFFICIAL.items():
        variant = VARIANTS[name]
        assert (variant.input_size, variant.heatmap_size, variant.heatmap_stride) == (size, 64, stride), name


@pytest.mark.parametrize(
    "name, point, cell",
    [
        ("base", (112.0, 70.0), (32, 20)),  # 32.0 and 20.0 exactly (stride 4 would give 28, 18)
        ("base", (61.25, 150.0), (18, 43)),  # 61.25 / 3.5 = 17.5 exactly: the tie rounds up
        ("base", (61.2, 150.0), (17, 43)),  # 17.486: down
        ("base", (222.0, 1.0), (63, 0)),  # 63.43 and 0.29: the last and the first cell
        ("small", (100.0, 60.0), (25, 15)),
        ("tiny", (102.0, 254.0), (26, 64)),  # 25.5 rounds up; 63.5 -> 64, just off the map
    ],
)
def test_support_heatmap_peaks_on_the_official_cell(name, point, cell):
    _, stride = OFFICIAL[name]
    assert cell == tuple(int(v / stride + 0.5) for v in point)  # the table is the official formula
    variant = VARIANTS[name]
    heatmaps, kept = support_heatmaps(
        torch.tensor([point]), torch.ones(1), size=variant.input_size, heatmap_size=variant.heatmap_size
    )  # [1, 64, 64], [1]
    assert heatmaps.shape == (1, 64, 64) and kept.item() == 1
    col, row = cell
    if col < 64 and row < 64:
        assert heatmaps[0].argmax().item() == row * 64 + col
        assert heatmaps[0, row, col].item() == pytest.approx(1.0)
    else:  # only the window's edge is on the map: the nearest cell holds exp(-d^2 / 2)
        assert heatmaps[0, row - 1, col].item() == pytest.approx(math.exp(-0.5))
        assert heatmaps[0].max().item() == pytest.approx(math.exp(-0.5))


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_support_heatmaps_match_the_official_generator(name):
    size, _ = OFFICIAL[name]
    generator = torch.Generator().manual_seed(len(name))
    # Multiples of 1/64 px, some off the image: a quotient by 3.5 is then a tie or >= 1/224 from one, so the
    # float32 division here and the float64 one of the reference round alike.
    points = torch.round((torch.rand(40, 2, generator=generator) * (size + 40) - 20) * 64) / 64  # [40, 2]
    ties = torch.tensor([[1.75, 5.25], [12.25, 219.75], [2.0, 6.0], [254.0, 10.0]])  # x / 3.5 or x / 4 at .5
    points = torch.cat([points, ties])  # [K, 2]
    visible = (torch.rand(len(points), generator=generator) > 0.2).float()  # [K]
    variant = VARIANTS[name]
    heatmaps, kept = support_heatmaps(points, visible, size=variant.input_size, heatmap_size=variant.heatmap_size)
    expected, weights = reference_heatmaps(points.tolist(), visible.tolist(), size)
    assert kept.tolist() == weights
    torch.testing.assert_close(heatmaps, torch.tensor(expected), atol=1e-6, rtol=0)
    assert 0 < kept.sum() < len(points)  # both kinds occur


class RampBackbone(nn.Module):
    """Stands in for SwinV2: features [B, C, S/16, S/16] whose channels 0 and 1 are each cell's centre x and y,
    in network pixels; the rest are zero. Bilinear resizing keeps a ramp a ramp, so a token pooled with a
    symmetric window reads the network position of its heatmap's centre cell."""

    def __init__(self, size: int, channels: int):
        super().__init__()
        self.size, self.channels = size, channels

    def forward(self, image: Tensor) -> Tensor:
        assert image.shape[-2:] == (self.size, self.size)  # the detector feeds the variant's own side
        side = self.size // 16
        centres = (torch.arange(side, dtype=image.dtype) + 0.5) * 16  # [h] network pixels
        features = image.new_zeros(image.shape[0], self.channels, side, side)
        features[:, 0] = centres[None, :]  # x grows along columns
        features[:, 1] = centres[:, None]  # y along rows
        return features


def ramp_model(name: str) -> CapeModel:
    """The variant's model with a RampBackbone and a token projection that keeps channels 0 and 1 as is."""
    variant = VARIANTS[name]
    # The backbone is replaced, so its depth does not matter: a one-block-per-stage one builds quickly.
    model = CapeModel(replace(variant, backbone=replace(variant.backbone, depths=(1, 1, 1, 1))))
    model.backbone = RampBackbone(variant.input_size, variant.backbone.num_features)
    projection = model.keypoint_head.query_proj
    with torch.no_grad():
        projection.weight.zero_()
        projection.bias.zero_()
        projection.weight[0, 0] = projection.weight[1, 1] = 1.0
    return model.eval()


# Cells 5..58 only: there the window (+-3) stays where bilinear resizing of the ramp is exact (no edge clamp).
FOOTPRINTS = {
    "base": [((112.0, 70.0), (32, 20)), ((61.25, 150.0), (18, 43))],
    "small": [((100.0, 60.0), (25, 15)), ((62.0, 150.0), (16, 38))],
    "tiny": [((102.0, 200.0), (26, 50)), ((30.0, 33.0), (8, 8))],
}


@pytest.mark.parametrize("name", list(FOOTPRINTS))
def test_each_support_token_pools_on_its_heatmap_cell(name):
    size, stride = OFFICIAL[name]
    model = ramp_model(name)
    points = torch.tensor([point for point, _ in FOOTPRINTS[name]])  # [K, 2] pixels
    cells = torch.tensor([cell for _, cell in FOOTPRINTS[name]], dtype=torch.float32)  # [K, 2]
    # A square support of the network side: resize_pad is the identity on coordinates.
    detector = CapeDetector(model, torch.rand(size, size, 3), points, skeleton=[(0, 1)])
    tokens = detector.support.tokens[0, :, :2]  # [K, 2] pooled (x, y)
    # The centre of the peak cell on the 64 grid, (cell + 1/2) * stride; e.g. Base (112, 70) -> (113.75, 71.75).
    # A stride-4 grid of 56 cells would pool Base's first point at (114, 74).
    torch.testing.assert_close(tokens, (cells + 0.5) * stride, atol=1e-3, rtol=0)


def test_a_support_heatmap_of_another_grid_is_refused():
    model = ramp_model("base")
    support = torch.zeros(1, 3, 224, 224)
    stride_4, kept = support_heatmaps(torch.tensor([[[112.0, 70.0]]]), torch.ones(1, 1), size=224, heatmap_size=56)
    with pytest.raises(ValueError, match=r"\(56, 56\), this model pools on 64x64"):
        model.encode_support(support, stride_4, kept, [(0, 0)])
