"""PoseAnything re-implementation: official state-dict layout, forward/gradients, preprocessing, loading."""

import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from dynapose4d.errors import DynaPoseError
from dynapose4d.pretrained.poseanything import (
    CapeDetector,
    build_cape,
    cape_from_state_dict,
    load_cape_checkpoint,
    resize_pad,
    support_heatmaps,
    variant_of,
)
from dynapose4d.pretrained.poseanything.transformer import GCNLayer, adjacency_from_skeleton

KEYS_FILE = Path(__file__).parent / "data" / "poseanything_small_keys.txt"
BUFFER_NAMES = ("relative_coords_table", "relative_position_index", "attn_mask")


def official_small_shapes() -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in KEYS_FILE.read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape = line.split()
            shapes[key] = tuple(int(n) for n in shape.split(","))
    return shapes


# Pre-February-2024 Base (research notes, 'History'): window buffers of SwinV2-B/224 with window 14.
BASE_WINDOW_BUFFERS = {
    "relative_coords_table": {(1, 31, 31, 2): (1, 27, 27, 2), (1, 15, 15, 2): (1, 13, 13, 2)},
    "relative_position_index": {(256, 256): (196, 196), (64, 64): (49, 49)},
    "attn_mask": {(16, 256, 256): (16, 196, 196), (4, 256, 256): (4, 196, 196)},
}


def base_shape(key: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A Small key's shape in the Base layout, from the stated differences alone (not from our model)."""
    name = key.split(".")[-1]
    if name in BASE_WINDOW_BUFFERS:
        return BASE_WINDOW_BUFFERS[name][shape]
    if key == "backbone.patch_embed.proj.weight":
        return (128, 3, 4, 4)
    if key.startswith("backbone."):
        # Widths 96*2^s and heads 3*2^s both grow by 4/3 (embed 128, heads 4*2^s); 512, 2, 1000 do not.
        return tuple(n * 4 // 3 if n % 3 == 0 else n for n in shape)
    if "in_proj" in key:
        return shape  # 3 x d_model, unchanged
    # in_channels and dim_feedforward 768 -> 1024 (the GCN's two kernels: 1536 -> 2048).
    return tuple({768: 1024, 1536: 2048}.get(n, n) for n in shape)


def official_base_shapes() -> dict[str, tuple[int, ...]]:
    shapes = {key: base_shape(key, shape) for key, shape in official_small_shapes().items()}
    return shapes | {"backbone.upsample.weight": (1024, 1024, 2, 2), "backbone.upsample.bias": (1024,)}


def tiny_checkpoint(shapes: dict[str, tuple[int, ...]], path: Path) -> Path:
    """Random weights in this layout, a few bytes each: every tensor is one stored value, expanded."""
    state = {}
    for key, shape in shapes.items():
        dtype = torch.int64 if key.endswith("relative_position_index") else torch.float32
        state[key] = torch.rand(1).to(dtype).expand(shape)
    torch.save({"meta": {"epoch": 1}, "state_dict": state}, path)
    return path


def meta_state(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    return {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}


def stage2_blocks(keys) -> int:
    return len({key.split(".")[4] for key in keys if key.startswith("backbone.layers.2.blocks.")})


@pytest.fixture(scope="module")
def small_model():
    return build_cape("small")


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_cape("tiny")


def test_small_matches_the_official_state_dict(small_model):
    official = official_small_shapes()
    assert len(official) == 619
    state = small_model.state_dict()
    assert {key: tuple(value.shape) for key, value in state.items()} == official
    # A state dict with exactly these keys and shapes loads strictly.
    loaded = {key: torch.zeros(shape, dtype=state[key].dtype) for key, shape in official.items()}
    small_model.load_state_dict(loaded, strict=True)


def test_tiny_differs_only_in_stage_2_depth(tiny_model):
    official = official_small_shapes()
    tiny = {key: tuple(value.shape) for key, value in tiny_model.state_dict().items()}
    assert stage2_blocks(official) == 18 and stage2_blocks(tiny) == 6
    deeper = {f"backbone.layers.2.blocks.{b}." for b in range(6, 18)}
    assert tiny == {key: shape for key, shape in official.items() if not key.startswith(tuple(deeper))}


def test_forward_batch_and_gradient_to_query(tiny_model):
    torch.manual_seed(1)
    num_points, skeleton = 4, [(0, 1), (1, 2), (2, 3)]
    queries = torch.randn(2, 3, 256, 256)
    support = torch.randn(1, 3, 256, 256)
    heatmaps, kept = support_heatmaps(torch.rand(1, num_points, 2) * 256, torch.tensor([[1.0, 1.0, 0.0, 1.0]]))

    with torch.no_grad():
        state = tiny_model.encode_support(support, heatmaps, kept, skeleton)  # one support for all queries
        batch = tiny_model.predict_all(queries, state)
    assert batch.layers.shape == (3, 2, num_points, 2) and batch.proposals.shape == (2, num_points, 2)
    assert ((batch.layers >= 0) & (batch.layers <= 1)).all()

    query = queries[1:].clone().requires_grad_(True)
    points = tiny_model.predict(query, state)  # [1, K, 2]
    torch.testing.assert_close(points[0], batch.layers[-1, 1], atol=1e-5, rtol=0)  # queries are independent
    points.sum().backward()
    assert torch.isfinite(query.grad).all() and query.grad.abs().sum() > 0


def test_support_heatmaps_hand_computed():
    points = torch.tensor([[100.0, 60.0], [254.0, 254.0], [-30.0, 10.0], [50.0, 50.0], [101.9, 60.0], [102.0, 60.0]])
    visible = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 1.0])
    heatmaps, kept = support_heatmaps(points, visible)
    assert heatmaps.shape == (6, 64, 64)
    assert kept.tolist() == [1, 1, 0, 0, 1, 1]  # (-30, 10): window entirely off the map; (50, 50): invisible

    # (100, 60) / 4 = (25, 15): peak 1, unnormalised Gaussian with sigma 1 in a 7x7 window.
    first = heatmaps[0]
    assert first.argmax().item() == 15 * 64 + 25
    assert first[15, 25].item() == pytest.approx(1.0)
    assert first[15, 26].item() == pytest.approx(math.exp(-0.5))
    assert first[17, 24].item() == pytest.approx(math.exp(-2.5))
    assert first[15, 29].item() == 0 and first[19, 25].item() == 0  # 4 cells away: outside the window
    assert first.sum().item() == pytest.approx(sum(math.exp(-(d**2) / 2) for d in range(-3, 4)) ** 2, rel=1e-5)

    # (254, 254) rounds to cell (64, 64), off the map, but its window still covers the corner.
    assert heatmaps[1].max().item() == pytest.approx(math.exp(-1.0))
    assert heatmaps[1][63, 63].item() == pytest.approx(math.exp(-1.0))
    assert heatmaps[2].abs().sum() == 0 and heatmaps[3].abs().sum() == 0
    # Rounding to the nearest cell: 101.9 / 4 = 25.475 -> 25, 102 / 4 = 25.5 -> 26.
    assert heatmaps[4].argmax().item() == 15 * 64 + 25
    assert heatmaps[5].argmax().item() == 15 * 64 + 26


@pytest.mark.parametrize("height, width", [(50, 30), (30, 50)])
def test_resize_pad_places_pixels_where_the_mapping_says(height, width):
    image = torch.full((3, height, width), 0.8)
    image[:, 20, 7] = 1.0
    image.requires_grad_(True)
    network, frame = resize_pad(image)
    assert network.shape == (3, 256, 256)
    assert (frame.pad_left, frame.pad_top) == ((50 - width) // 2, (50 - height) // 2)

    # The bright pixel lands where to_network puts its centre.
    centre = frame.to_network(torch.tensor([7.5, 20.5]))
    row, col = divmod(network[0].argmax().item(), 256)
    assert (col, row) == (int(centre[0]), int(centre[1]))
    # Padding is zero in normalised space (the mean colour), on both sides of the shorter axis.
    padded_axis = -1 if width < height else -2  # 10 px each side, 51.2 network px
    assert network.narrow(padded_axis, 0, 40).abs().max() == 0
    assert network.narrow(padded_axis, 216, 40).abs().max() == 0
    assert network.narrow(padded_axis, 60, 136).abs().min() > 1

    network[0, row, col].backward()
    assert image.grad[0, 20, 7] > 0

    points = torch.tensor([[0.0, 0.0], [float(width), float(height)], [12.3, 4.5]])
    torch.testing.assert_close(frame.to_image(frame.to_network(points)), points)
    corner = frame.to_network(torch.tensor([float(width), float(height)]))
    torch.testing.assert_close(corner, torch.tensor([256.0 - frame.pad_left * 5.12, 256.0 - frame.pad_top * 5.12]))


def test_adjacency_from_skeleton_hand_computed():
    ignored = torch.tensor([[False, False, False, True], [False, False, True, False]])
    adjacency = adjacency_from_skeleton([(0, 1), (2, 1)], ignored)
    assert adjacency.shape == (2, 2, 4, 4)
    torch.testing.assert_close(adjacency[:, 0], torch.diag_embed((~ignored).float()))
    expected_all = torch.tensor([[0, 1, 0, 0], [0.5, 0, 0.5, 0], [0, 1, 0, 0], [0, 0, 0, 0]])
    expected_without_2 = torch.tensor([[0, 1.0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    torch.testing.assert_close(adjacency[0, 1], expected_all)
    torch.testing.assert_close(adjacency[1, 1], expected_without_2)

    with pytest.raises(DynaPoseError, match="out of range"):
        adjacency_from_skeleton([(0, 4)], ignored)


def test_gcn_scales_each_neighbour_by_its_own_degree():
    # Star 0-1, 0-2: node 0 receives x1/deg(1) + x2/deg(2) = x1 + x2, node 1 receives x0/deg(0) = x0/2.
    layer = GCNLayer(2, 2)
    with torch.no_grad():
        layer.conv.weight.zero_()
        layer.conv.bias.zero_()
        layer.conv.weight[2:, :, 0] = torch.eye(2)  # kernel 1 (neighbours) copies the input, kernel 0 is off
    x = torch.tensor([[[4.0, 1.0], [1.0, 2.0], [3.0, 5.0]]])  # [B=1, K=3, C=2]
    out = layer(x, adjacency_from_skeleton([(0, 1), (0, 2)], torch.zeros(1, 3, dtype=torch.bool)))
    torch.testing.assert_close(out[0], torch.tensor([[4.0, 7.0], [2.0, 0.5], [2.0, 0.5]]))


def test_load_checkpoint_in_mmcv_format(tiny_model, tmp_path):
    state = tiny_model.state_dict()
    # As mmcv saves it: a wrapper key prefix it strips, and metadata the weights-only unpickler refuses.
    wrapped = OrderedDict((f"module.{key}", value) for key, value in state.items())
    meta = {"epoch": 210, "config": "model = dict(...)", "best_score": np.float64(0.9), "seed": np.int64(7)}
    path = tmp_path / "poseanything_tiny.pth"
    torch.save({"meta": meta, "state_dict": wrapped, "optimizer": {"state": {}, "param_groups": []}}, path)

    loaded = load_cape_checkpoint(path)
    assert stage2_blocks(loaded.state_dict()) == 6 and not loaded.training
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, state[key]), key

    with pytest.raises(DynaPoseError, match="not found"):
        load_cape_checkpoint(tmp_path / "missing.pth")


def test_state_dict_problems_are_reported(tiny_model):
    state = tiny_model.state_dict()
    without_buffers = {key: value for key, value in state.items() if not key.endswith(BUFFER_NAMES)}
    cape_from_state_dict(without_buffers)  # the Swin buffers are recomputed

    broken = dict(state)
    del broken["keypoint_head.query_proj.bias"]
    broken["keypoint_head.extra.weight"] = torch.zeros(1)
    broken["backbone.norm.weight"] = torch.zeros(5)
    with pytest.raises(DynaPoseError) as error:
        cape_from_state_dict(broken)
    message = str(error.value)
    assert "missing (1): keypoint_head.query_proj.bias" in message
    assert "unexpected (1): keypoint_head.extra.weight" in message
    assert "wrong shape (1): backbone.norm.weight" in message

    with pytest.raises(DynaPoseError, match="unexpected \\(1\\): backbone.upsample.weight"):
        cape_from_state_dict(dict(state, **{"backbone.upsample.weight": torch.zeros(1)}))
    five_blocks = {key: value for key, value in state.items() if not key.startswith("backbone.layers.2.blocks.5.")}
    with pytest.raises(DynaPoseError, match="width 96 with 5 SwinV2 stage-2 blocks"):
        cape_from_state_dict(five_blocks)


@pytest.fixture(scope="module")
def base_model():
    torch.manual_seed(2)
    return build_cape("base")


def test_base_matches_the_pre_2024_layout(base_model):
    official = official_base_shapes()
    assert len(official) == 621
    assert {key: tuple(value.shape) for key, value in base_model.state_dict().items()} == official
    assert base_model.input_size == 224
    # Stage 3 (7x7, pre-trained window 6): offset -6 scaled by 6 - 1, not by 7 - 1, then log-spaced.
    table = base_model.backbone.layers[3].blocks[0].attn.relative_coords_table
    assert table[0, 0, 0, 0].item() == pytest.approx(-math.log2(6 / 5 * 8 + 1) / 3)


@pytest.mark.parametrize("variant, shapes", [("small", official_small_shapes), ("base", official_base_shapes)])
def test_each_variant_loads_strictly_from_a_tiny_checkpoint(variant, shapes, tmp_path):
    path = tiny_checkpoint(shapes(), tmp_path / f"{variant}.pth")
    assert path.stat().st_size < 1 << 20  # tiny on disk, full-size once loaded
    model = load_cape_checkpoint(path)
    assert model.variant.backbone.embed_dim == (128 if variant == "base" else 96)
    saved = torch.load(path, weights_only=True)["state_dict"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[key].expand_as(value)), key


def test_the_variant_comes_from_tensor_shapes():
    small, base = official_small_shapes(), official_base_shapes()
    deeper = tuple(f"backbone.layers.2.blocks.{b}." for b in range(6, 18))
    tiny = {key: shape for key, shape in small.items() if not key.startswith(deeper)}
    assert variant_of(meta_state(small)) == "small"
    assert variant_of(meta_state(tiny)) == "tiny"
    assert variant_of(meta_state(base)) == "base"

    wide = meta_state(small) | {"backbone.patch_embed.proj.weight": torch.empty(192, 3, 4, 4, device="meta")}
    with pytest.raises(DynaPoseError) as error:
        variant_of(wide, "odd.pth")
    message = str(error.value)
    assert "\n" not in message and "odd.pth" in message and "width 192 with 18 SwinV2 stage-2 blocks" in message


def test_the_base_detector_feeds_the_model_its_own_input_size(base_model):
    torch.manual_seed(3)
    image = torch.rand(40, 60, 3)
    points = torch.tensor([[10.5, 12.5], [30.5, 20.5], [50.5, 30.5]])
    detector = CapeDetector(base_model, image, points, [(0, 1), (1, 2)])
    assert detector.size == 224
    keypoints = detector.detect(image[None], batch_size=1)  # a 256 input would fail the backbone's size check
    assert keypoints.shape == (1, 3, 2) and torch.isfinite(keypoints).all()


def test_a_damaged_checkpoint_is_named_with_how_to_fetch_it_again(tmp_path):
    path = tmp_path / "demo_b.pth"
    path.write_bytes(b"PK\x03\x04 cut short")  # the start of a zip archive, as a torch file begins
    with pytest.raises(DynaPoseError, match=f"cannot read PoseAnything checkpoint {path}.*delete it and rerun"):
        load_cape_checkpoint(path)
