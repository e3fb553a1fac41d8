"""The paper's losses (eqs. 3-5 and PAL) against hand-computed values."""

import pytest
import torch

from dynapose4d.losses import (
    keypoint_match_loss,
    spatio_temporal_consistency_loss,
)


def test_keypoint_match_loss_hand_computed():
    # Two frames, two keypoints, image 100 wide and 50 high: offsets normalise to fractions.
    target = torch.zeros(2, 2, 2)
    predicted = torch.tensor([[[10.0, 0.0], [0.0, 5.0]], [[20.0, 10.0], [0.0, 0.0]]])
    # Frame 0: (0.1)^2 and (0.1)^2; frame 1: 0.2^2 + 0.2^2 and 0. Mean over keypoints, sum over frames.
    expected = (0.01 + 0.01) / 2 + (0.04 + 0.04 + 0.0) / 2
    loss = keypoint_match_loss(predicted, target, image_size=(100, 50))
    assert loss.item() == pytest.approx(expected)


def test_keypoint_match_loss_sums_over_frames_and_averages_over_keypoints():
    target = torch.rand(1, 4, 2) * 64
    predicted = target + torch.tensor([6.4, 0.0])  # every keypoint off by 0.1 of the image
    one_frame = keypoint_match_loss(predicted, target, 64)
    assert one_frame.item() == pytest.approx(0.01)
    three_frames = keypoint_match_loss(predicted.repeat(3, 1, 1), target.repeat(3, 1, 1), 64)
    assert three_frames.item() == pytest.approx(0.03)
    more_keypoints = keypoint_match_loss(predicted.repeat(1, 5, 1), target.repeat(1, 5, 1), 64)
    assert more_keypoints.item() == pytest.approx(0.01)


def test_keypoint_match_loss_is_resolution_invariant():
    generator = torch.Generator().manual_seed(0)
    predicted = torch.rand(3, 5, 2, generator=generator) * 64
    target = torch.rand(3, 5, 2, generator=generator) * 64
    small = keypoint_match_loss(predicted, target, (64, 48))
    large = keypoint_match_loss(predicted * 4, target * 4, (256, 192))
    assert large.item() == pytest.approx(small.item(), rel=1e-6)


def test_keypoint_match_loss_visibility_averages_over_visible_keypoints():
    target = torch.zeros(2, 3, 2)
    predicted = torch.tensor([[[10.0, 0.0], [20.0, 0.0], [90.0, 90.0]], [[50.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    visibility = torch.tensor([[True, True, False], [False, False, False]])
    # Frame 0 averages 0.01 and 0.04; frame 1 has nothing visible and adds 0.
    loss = keypoint_match_loss(predicted, target, 100, visibility)
    assert loss.item() == pytest.approx((0.01 + 0.04) / 2)
    all_visible = keypoint_match_loss(predicted, target, 100, torch.ones(2, 3, dtype=torch.bool))
    assert all_visible.item() == pytest.approx(keypoint_match_loss(predicted, target, 100).item())


def test_keypoint_match_loss_of_no_frames_is_zero_with_a_graph():
    predicted = torch.zeros(0, 4, 2, requires_grad=True)
    loss = keypoint_match_loss(predicted, torch.zeros(0, 4, 2), 64)
    assert loss.item() == 0.0 and loss.requires_grad


def test_scl_known_displacements():
    # Point 0 moves by 1 then 2 along x; point 1 by 3 along y then stays: sums 1+4 and 9+0.
    points = torch.tensor(
        [
            [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
            [[1.0, 0.0, 0.0], [0.0, 3.0, 0.0]],
            [[3.0, 0.0, 0.0], [0.0, 3.0, 0.0]],
        ]
    )
    assert spatio_temporal_consistency_loss(points).item() == pytest.approx((5.0 + 9.0) / 2)


def test_scl_is_zero_for_constant_trajectories():
    points = torch.rand(1, 10, 3).repeat(4, 1, 1)
    assert spatio_temporal_consistency_loss(points).item() == 0.0


def test_scl_gradient_reaches_the_points():
    points = torch.rand(3, 6, 3, requires_grad=True)
    spatio_temporal_consistency_loss(points).backward()
    # d/dP of 1/M sum ||P_{t+1} - P_t||^2; the middle frame collects both of its steps.
    steps = points.detach()[1:] - points.detach()[:-1]
    expected = torch.zeros(3, 6, 3)
    expected[1:] += 2 * steps / 6
    expected[:-1] -= 2 * steps / 6
    torch.testing.assert_close(points.grad, expected)


def test_scl_of_a_single_frame_is_zero_with_a_graph():
    points = torch.rand(1, 5, 3, requires_grad=True)
    loss = spatio_temporal_consistency_loss(points)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(points.grad, torch.zeros_like(points))
