"""The plain-PyTorch I3D against pytorch-i3d's pytorch_i3d.py: state-dict layout, 'same' padding, shapes, loading."""

import pytest
import torch

from dynapose4d.errors import DynaPoseError
from dynapose4d.pretrained.i3d import (
    InceptionI3d,
    MaxPool3dSamePadding,
    Unit3D,
    i3d_features,
    load_i3d_400,
    same_padding,
    time_averaged_logits,
)

# Every Unit3D of pytorch_i3d.py's InceptionI3d(400, in_channels=3): (name, in, out, kernel), written out from its
# constructor calls (InceptionModule(in, [b0, b1a, b1b, b2a, b2b, b3b]): b1b and b2b are 3x3x3, the rest 1x1x1).
UNIT3D_TABLE = [
    ("Conv3d_1a_7x7", 3, 64, (7, 7, 7)),
    ("Conv3d_2b_1x1", 64, 64, (1, 1, 1)),
    ("Conv3d_2c_3x3", 64, 192, (3, 3, 3)),
    ("Mixed_3b.b0", 192, 64, (1, 1, 1)),
    ("Mixed_3b.b1a", 192, 96, (1, 1, 1)),
    ("Mixed_3b.b1b", 96, 128, (3, 3, 3)),
    ("Mixed_3b.b2a", 192, 16, (1, 1, 1)),
    ("Mixed_3b.b2b", 16, 32, (3, 3, 3)),
    ("Mixed_3b.b3b", 192, 32, (1, 1, 1)),
    ("Mixed_3c.b0", 256, 128, (1, 1, 1)),
    ("Mixed_3c.b1a", 256, 128, (1, 1, 1)),
    ("Mixed_3c.b1b", 128, 192, (3, 3, 3)),
    ("Mixed_3c.b2a", 256, 32, (1, 1, 1)),
    ("Mixed_3c.b2b", 32, 96, (3, 3, 3)),
    ("Mixed_3c.b3b", 256, 64, (1, 1, 1)),
    ("Mixed_4b.b0", 480, 192, (1, 1, 1)),
    ("Mixed_4b.b1a", 480, 96, (1, 1, 1)),
    ("Mixed_4b.b1b", 96, 208, (3, 3, 3)),
    ("Mixed_4b.b2a", 480, 16, (1, 1, 1)),
    ("Mixed_4b.b2b", 16, 48, (3, 3, 3)),
    ("Mixed_4b.b3b", 480, 64, (1, 1, 1)),
    ("Mixed_4c.b0", 512, 160, (1, 1, 1)),
    ("Mixed_4c.b1a", 512, 112, (1, 1, 1)),
    ("Mixed_4c.b1b", 112, 224, (3, 3, 3)),
    ("Mixed_4c.b2a", 512, 24, (1, 1, 1)),
    ("Mixed_4c.b2b", 24, 64, (3, 3, 3)),
    ("Mixed_4c.b3b", 512, 64, (1, 1, 1)),
    ("Mixed_4d.b0", 512, 128, (1, 1, 1)),
    ("Mixed_4d.b1a", 512, 128, (1, 1, 1)),
    ("Mixed_4d.b1b", 128, 256, (3, 3, 3)),
    ("Mixed_4d.b2a", 512, 24, (1, 1, 1)),
    ("Mixed_4d.b2b", 24, 64, (3, 3, 3)),
    ("Mixed_4d.b3b", 512, 64, (1, 1, 1)),
    ("Mixed_4e.b0", 512, 112, (1, 1, 1)),
    ("Mixed_4e.b1a", 512, 144, (1, 1, 1)),
    ("Mixed_4e.b1b", 144, 288, (3, 3, 3)),
    ("Mixed_4e.b2a", 512, 32, (1, 1, 1)),
    ("Mixed_4e.b2b", 32, 64, (3, 3, 3)),
    ("Mixed_4e.b3b", 512, 64, (1, 1, 1)),
    ("Mixed_4f.b0", 528, 256, (1, 1, 1)),
    ("Mixed_4f.b1a", 528, 160, (1, 1, 1)),
    ("Mixed_4f.b1b", 160, 320, (3, 3, 3)),
    ("Mixed_4f.b2a", 528, 32, (1, 1, 1)),
    ("Mixed_4f.b2b", 32, 128, (3, 3, 3)),
    ("Mixed_4f.b3b", 528, 128, (1, 1, 1)),
    ("Mixed_5b.b0", 832, 256, (1, 1, 1)),
    ("Mixed_5b.b1a", 832, 160, (1, 1, 1)),
    ("Mixed_5b.b1b", 160, 320, (3, 3, 3)),
    ("Mixed_5b.b2a", 832, 32, (1, 1, 1)),
    ("Mixed_5b.b2b", 32, 128, (3, 3, 3)),
    ("Mixed_5b.b3b", 832, 128, (1, 1, 1)),
    ("Mixed_5c.b0", 832, 384, (1, 1, 1)),
    ("Mixed_5c.b1a", 832, 192, (1, 1, 1)),
    ("Mixed_5c.b1b", 192, 384, (3, 3, 3)),
    ("Mixed_5c.b2a", 832, 48, (1, 1, 1)),
    ("Mixed_5c.b2b", 48, 128, (3, 3, 3)),
    ("Mixed_5c.b3b", 832, 128, (1, 1, 1)),
]
LOGITS = ("logits", 1024, 400, (1, 1, 1))  # no BatchNorm, with bias

# Endpoint outputs for a [1, 3, 16, 224, 224] input, by hand: the 'same' rule gives ceil(size / stride) steps.
ENDPOINT_SHAPES = {
    "Conv3d_1a_7x7": [1, 64, 8, 112, 112],  # stride 2 in t, h, w
    "MaxPool3d_2a_3x3": [1, 64, 8, 56, 56],  # stride (1, 2, 2)
    "Conv3d_2b_1x1": [1, 64, 8, 56, 56],
    "Conv3d_2c_3x3": [1, 192, 8, 56, 56],
    "MaxPool3d_3a_3x3": [1, 192, 8, 28, 28],
    "Mixed_3b": [1, 256, 8, 28, 28],  # 64 + 128 + 32 + 32
    "Mixed_3c": [1, 480, 8, 28, 28],  # 128 + 192 + 96 + 64
    "MaxPool3d_4a_3x3": [1, 480, 4, 14, 14],  # stride 2
    "Mixed_4b": [1, 512, 4, 14, 14],
    "Mixed_4c": [1, 512, 4, 14, 14],
    "Mixed_4d": [1, 512, 4, 14, 14],
    "Mixed_4e": [1, 528, 4, 14, 14],
    "Mixed_4f": [1, 832, 4, 14, 14],
    "MaxPool3d_5a_2x2": [1, 832, 2, 7, 7],  # stride 2
    "Mixed_5b": [1, 832, 2, 7, 7],
    "Mixed_5c": [1, 1024, 2, 7, 7],  # 384 + 384 + 128 + 128
}


def expected_state_shapes() -> dict[str, tuple[int, ...]]:
    """State-dict keys and shapes that the table implies: conv3d weight [out, in, kt, kh, kw] and BatchNorm3d."""
    shapes = {}
    for name, c_in, c_out, kernel in UNIT3D_TABLE:
        shapes[f"{name}.conv3d.weight"] = (c_out, c_in, *kernel)
        for field in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.bn.{field}"] = (c_out,)
        shapes[f"{name}.bn.num_batches_tracked"] = ()
    name, c_in, c_out, kernel = LOGITS
    shapes[f"{name}.conv3d.weight"] = (c_out, c_in, *kernel)
    shapes[f"{name}.conv3d.bias"] = (c_out,)
    return shapes


def randomised(model: InceptionI3d, seed: int = 0) -> InceptionI3d:
    """Model with every parameter and BatchNorm statistic random, so a buffer lost in a round trip shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif name.endswith("num_batches_tracked"):
                tensor.fill_(7)
            elif name.endswith("bn.weight"):  # scales near 1
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1 + 1)
            elif name.endswith(("running_mean", "bn.bias", "conv3d.bias")):
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
            else:  # conv weights: He-scaled so activations neither vanish nor blow up through 60 layers
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * (2 / fan_in) ** 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def video() -> torch.Tensor:
    return torch.rand(1, 3, 16, 224, 224, generator=torch.Generator().manual_seed(1)) * 2 - 1  # [1, 3, T, H, W]


@pytest.fixture(scope="module")
def model() -> InceptionI3d:
    return randomised(InceptionI3d())


def test_state_dict_keys_and_shapes_are_pytorch_i3d_s(model):
    ours = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    expected = expected_state_shapes()
    assert sorted(ours) == sorted(expected)
    assert ours == expected
    assert sum(p.numel() for p in model.parameters()) == 12_697_264  # ~12.7M, the table's conv + BN + logits


def test_batch_norm_dropout_and_pool_settings_are_pytorch_i3d_s(model):
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    assert len(norms) == len(UNIT3D_TABLE)
    assert all(m.eps == 0.001 and m.momentum == 0.01 for m in norms)
    assert model.logits.bn is None and model.logits.conv3d.bias is not None
    assert model.dropout.p == 0.5
    assert tuple(model.avg_pool.kernel_size) == (2, 7, 7) and tuple(model.avg_pool.stride) == (1, 1, 1)


def test_same_padding_by_hand():
    assert same_padding(224, kernel=7, stride=2) == (2, 3)  # 224 % 2 == 0: 7 - 2 = 5, the odd one after
    assert same_padding(5, kernel=3, stride=2) == (1, 1)  # 5 % 2 == 1: 3 - 1 = 2
    assert same_padding(112, kernel=3, stride=2) == (0, 1)
    assert same_padding(16, kernel=1, stride=1) == (0, 0)
    assert same_padding(7, kernel=2, stride=2) == (0, 1)  # 7 % 2 == 1: 2 - 1 = 1
    assert same_padding(8, kernel=1, stride=2) == (0, 0)  # never negative


def test_max_pool_pads_after_with_zeros():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 1, 4)  # [N, C, T, H, W]
    pool = MaxPool3dSamePadding(kernel_size=(1, 1, 3), stride=(1, 1, 2))
    # total pad 3 - 2 = 1, after: [1, 2, 3, 4, 0] -> windows [1, 2, 3], [3, 4, 0] (before would give [2, 4])
    assert pool(x).flatten().tolist() == [3.0, 4.0]
    # zeros, not -inf, as F.pad pads: the last window [-3, -4, 0] is 0
    assert pool(-x).flatten().tolist() == [-1.0, 0.0]


def test_unit3d_pads_after_and_keeps_length():
    unit = Unit3D(1, 1, kernel=(1, 1, 2), batch_norm=False, activation=False)
    with torch.no_grad():
        unit.conv3d.weight.fill_(1.0)  # sums neighbours
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 1, 4)
    # total pad 2 - 1 = 1, after: [1, 2, 3, 4, 0] -> [3, 5, 7, 4]
    assert unit(x).flatten().tolist() == [3.0, 5.0, 7.0, 4.0]


def test_endpoint_shapes_for_16_frames_of_224(model, video):
    shapes = {}

    def record(name):
        def hook(_module, _inputs, output):  # returns None: a forward hook's return value replaces the output
            shapes[name] = list(output.shape)

        return hook

    hooks = [getattr(model, name).register_forward_hook(record(name)) for name in ENDPOINT_SHAPES]
    try:
        with torch.no_grad():
            logits = model(video)
    finally:
        for hook in hooks:
            hook.remove()
    assert shapes == ENDPOINT_SHAPES
    assert list(logits.shape) == [1, 400, 1]  # pytorch-i3d's forward: AvgPool3d [2, 7, 7] over T' = 2 leaves 1 step


def test_features_are_time_averaged_logits_of_each_step(model):
    trunk = torch.randn(2, 1024, 4, 7, 7, generator=torch.Generator().manual_seed(2))  # Mixed_5c output, T' = 4
    weight = model.logits.conv3d.weight.flatten(1)  # [400, 1024]
    per_step = torch.einsum("nct,kc->nkt", trunk.mean((3, 4)), weight) + model.logits.conv3d.bias[:, None]
    with torch.no_grad():
        ours = time_averaged_logits(model, trunk)  # [2, 400]
        pytorch_i3d = model.logits(model.avg_pool(trunk)).flatten(2).mean(2)  # windows of 2 steps overlap
    torch.testing.assert_close(ours, per_step.mean(2), rtol=1e-5, atol=1e-5)
    # inception3d.py's [1, 7, 7] pool weighs every step alike; pytorch-i3d's [2, 7, 7] weighs the middle steps double
    assert not torch.allclose(ours, pytorch_i3d, rtol=1e-3, atol=1e-3)


def test_round_trip_through_a_saved_file_gives_identical_features(model, video, tmp_path):
    path = tmp_path / "i3d_pretrained_400.pt"
    torch.save(model.state_dict(), path)
    loaded = load_i3d_400(path, "cpu")
    assert not loaded.training
    before, after = i3d_features(model, video), i3d_features(loaded, video)
    assert list(before.shape) == [1, 400] and before.dtype == torch.float32
    assert torch.isfinite(before).all() and before.std() > 0
    assert torch.equal(before, after)
    # for 16 frames (T' = 2) the time-averaged feature equals pytorch-i3d's one-step logits
    with torch.no_grad():
        torch.testing.assert_close(before, model(video)[..., 0], rtol=1e-4, atol=1e-4)
    fresh = i3d_features(randomised(InceptionI3d(), seed=5), video)
    assert not torch.allclose(before, fresh)  # the features do depend on the loaded weights


def test_a_missing_key_is_a_loading_error_naming_the_file(model, tmp_path):
    state = model.state_dict()
    del state["Mixed_4c.b1b.bn.running_var"]
    path = tmp_path / "broken_i3d.pt"
    torch.save(state, path)
    with pytest.raises(DynaPoseError, match="broken_i3d.pt") as error:
        load_i3d_400(path)
    assert "Mixed_4c.b1b.bn.running_var" in str(error.value)


def test_a_shape_mismatch_is_a_loading_error_naming_the_file(tmp_path):
    state = InceptionI3d(num_classes=101).state_dict()  # an UCF-101 head: logits [101, 1024, 1, 1, 1]
    path = tmp_path / "ucf101_i3d.pt"
    torch.save(state, path)
    with pytest.raises(DynaPoseError, match="ucf101_i3d.pt.*logits.conv3d.weight"):
        load_i3d_400(path)


def test_a_missing_or_unreadable_file_names_it(tmp_path):
    with pytest.raises(DynaPoseError, match="absent_i3d.pt.*drive.google.com"):
        load_i3d_400(tmp_path / "absent_i3d.pt")
    garbage = tmp_path / "garbage_i3d.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(DynaPoseError, match="garbage_i3d.pt"):
        load_i3d_400(garbage)


def test_i3d_features_rejects_other_sizes_and_train_mode():
    model = InceptionI3d()  # train mode, as nn.Module starts
    with pytest.raises(ValueError, match="eval mode"):
        i3d_features(model, torch.zeros(1, 3, 16, 224, 224))
    with pytest.raises(ValueError, match="224"):
        i3d_features(model.eval(), torch.zeros(1, 3, 16, 112, 112))
