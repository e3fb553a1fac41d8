"""A deformation anchored at one time: the identity there, the field's motion relative to it elsewhere."""

import pytest
import torch
from test_deform import NAMES, canonical, make

from dynapose4d.deform.anchored import AnchoredDeformation
from dynapose4d.errors import DynaPoseError
from dynapose4d.geometry import quat_to_matrix

ANCHOR = -1.0  # normalised time of frame 0


def trained_field(name: str, means: torch.Tensor):
    """A field far from the identity: every parameter moved by noise."""
    field = make(name, means)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in field.parameters():
            parameter.add_(0.2 * torch.randn(parameter.shape, generator=g))
    return field


@pytest.mark.parametrize("name", NAMES)
def test_the_anchor_time_is_the_identity_and_other_times_move(name):
    means, quats, log_scales = canonical()
    field = trained_field(name, means)
    anchored = AnchoredDeformation(field, ANCHOR)
    t = torch.tensor([ANCHOR, 0.4])
    new_means, new_quats, new_log_scales = anchored(means, quats, log_scales, t)
    assert torch.equal(new_means[0], means) and torch.equal(new_log_scales[0], log_scales)
    torch.testing.assert_close(new_quats[0], quats, atol=1e-6, rtol=0)
    assert (new_means[1] - means).norm(dim=-1).max() > 1e-3  # the free field moves it there
    assert torch.equal(anchored.motion_points(means, t)[0], field.rest_points(means))
    assert torch.equal(anchored.deform_points(means, t[:1])[0], means)


@pytest.mark.parametrize("name", NAMES)
def test_the_motion_is_the_fields_motion_from_its_anchor_pose(name):
    """Checked with rotation matrices: R'(t) = R(t) R(t0)^T R, and offsets relative to the anchor pose."""
    means, quats, log_scales = canonical()
    field = trained_field(name, means)
    t = torch.tensor([0.4])
    free_means, free_quats, free_log_scales = field(means, quats, log_scales, torch.tensor([0.4, ANCHOR]))
    new_means, new_quats, new_log_scales = AnchoredDeformation(field, ANCHOR)(means, quats, log_scales, t)

    torch.testing.assert_close(new_means[0], means + free_means[0] - free_means[1])
    torch.testing.assert_close(new_log_scales[0], log_scales + free_log_scales[0] - free_log_scales[1])
    turn_t, turn_anchor = quat_to_matrix(free_quats[0]), quat_to_matrix(free_quats[1])  # R(t) R, R(t0) R
    expected = turn_t @ turn_anchor.transpose(-1, -2) @ quat_to_matrix(quats)
    torch.testing.assert_close(quat_to_matrix(new_quats[0]), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_the_field_and_its_parts_stay_reachable(name):
    means, quats, log_scales = canonical()
    anchored = AnchoredDeformation(trained_field(name, means), ANCHOR)
    outputs = anchored(means, quats, log_scales, torch.tensor([-0.2, 0.9]))
    sum(output.square().mean() for output in outputs).backward()
    moved = [key for key, parameter in anchored.named_parameters() if parameter.grad is not None
             and parameter.grad.abs().sum() > 0]  # fmt: skip
    assert moved and all(key.startswith("field.") for key in moved)
    assert [group["name"] for group in anchored.param_groups(1e-3)] == [
        group["name"] for group in anchored.field.param_groups(1e-3)
    ]  # fmt: skip
    assert hasattr(anchored, "spatial_planes") == (name == "hexplane")  # the plane priors find the planes


@pytest.mark.parametrize("name", NAMES)
def test_the_first_gradient_at_init_is_not_rounding_noise(name):
    """At init the heads are zero, so only they get a gradient; measured from the anchor, it is the difference
    of the features at t and at t0. It must be a real quantity, the same in float32 and float64, not float
    rounding (time planes of exactly 1 made it zero in exact arithmetic, ~1e-7 in float32)."""
    means, quats, log_scales = canonical()
    target = torch.randn(1, *means.shape, generator=torch.Generator().manual_seed(4))  # [1, N, 3]
    gradients = {}
    for dtype in (torch.float32, torch.float64):
        anchored = AnchoredDeformation(make(name, means), ANCHOR).to(dtype)
        moved, _, _ = anchored(means.to(dtype), quats.to(dtype), log_scales.to(dtype), torch.tensor([0.4]))
        (moved - target.to(dtype)).square().mean().backward()
        gradients[dtype] = {key: p.grad for key, p in anchored.named_parameters() if p.grad is not None}
    assert gradients[torch.float32].keys() == gradients[torch.float64].keys()
    single, double = (torch.cat([grad.flatten() for grad in gradients[dtype].values()]) for dtype in gradients)
    torch.testing.assert_close(single.double(), double, rtol=1e-2, atol=1e-3 * double.abs().max().item())


def test_the_stage_pins_frame_0_to_the_static_model_and_refuses_an_anchor_past_the_clip(dynamic_stage):
    stage = dynamic_stage("dynamic.anchor_frame=0", "dynamic.optimize_gaussians=true")
    for _ in range(2):  # phi and the Gaussians train
        stage.train_step()
    assert isinstance(stage.deformation, AnchoredDeformation)
    static = stage.model.activated()
    first, second = stage.deformed(torch.tensor([0, 1]))
    assert torch.equal(first["means"], static["means"])
    assert not torch.equal(second["means"], static["means"])

    with pytest.raises(DynaPoseError, match="anchor_frame=2, but the driving video has 2 frames"):
        dynamic_stage("dynamic.anchor_frame=2")  # the tiny clip has frames 0 and 1
