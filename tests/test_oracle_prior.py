"""The oracle prior: the sample's own training views, at each view's frame, size and background."""

import pytest
import torch

from dynapose4d.data.sample import Sample
from dynapose4d.errors import DynaPoseError
from dynapose4d.priors import ViewBatch
from dynapose4d.priors.oracle import OraclePrior


def sample_with_training_views(frames: int, train_frames: int) -> Sample:
    """Random RGBA images, 3 training views on the orbit; nothing here comes from the synthetic subject."""
    generator = torch.Generator().manual_seed(0)
    views = [{"elevation": 0.0, "azimuth": 90.0}, {"elevation": 20.0, "azimuth": 200.0},
             {"elevation": -10.0, "azimuth": 300.0}]  # fmt: skip
    return Sample(
        image=torch.rand(8, 8, 4, generator=generator),
        driving_video=torch.rand(frames, 8, 8, 4, generator=generator),
        eval_views=[{"elevation": 0.0, "azimuth": 45.0}],
        eval_renders=torch.rand(frames, 1, 8, 8, 4, generator=generator),
        train_views=views,
        train_renders=torch.rand(train_frames, 3, 8, 8, 4, generator=generator),
    )


def test_targets_are_the_picked_views_at_their_frames_over_their_backgrounds():
    sample = sample_with_training_views(frames=3, train_frames=3)
    prior = OraclePrior(sample, needs_every_frame=True)
    cameras, elevations, azimuths, picks = prior.sample_cameras(4, 8, torch.Generator().manual_seed(1))
    torch.testing.assert_close(cameras.viewmats, sample.train_cameras().viewmats[picks])
    expected_angles = torch.tensor([[view["elevation"], view["azimuth"] % 360] for view in sample.train_views])[picks]
    torch.testing.assert_close(torch.stack([elevations, azimuths % 360], -1), expected_angles, atol=1e-3, rtol=0)
    frames = torch.tensor([2, 0, 1, 2])
    backgrounds = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.2, 0.5, 0.9], [0.0, 0.0, 0.0]])
    views = ViewBatch(cameras, elevations, azimuths, 2.0, frames, backgrounds, picks)
    rgb, alpha = prior.targets(views, 8)
    for b in range(4):
        truth = sample.train_renders[frames[b], picks[b]]  # [8, 8, 4]
        expected = truth[..., :3] * truth[..., 3:] + (1 - truth[..., 3:]) * backgrounds[b]
        torch.testing.assert_close(rgb[b], expected)
        torch.testing.assert_close(alpha[b], truth[..., 3:])


def test_smaller_renders_compare_with_area_averaged_ground_truth():
    sample = sample_with_training_views(frames=1, train_frames=1)
    prior = OraclePrior(sample, needs_every_frame=False)
    cameras, elevations, azimuths, picks = prior.sample_cameras(2, 4, torch.Generator().manual_seed(0))
    assert (cameras.width, cameras.height) == (4, 4)
    torch.testing.assert_close(cameras.Ks[:, :2], sample.train_cameras().Ks[picks, :2] / 2)  # half the pixels
    views = ViewBatch(cameras, elevations, azimuths, 2.0, backgrounds=torch.zeros(2, 3), view_indices=picks)
    rgb, alpha = prior.targets(views, 4)
    truth = sample.train_renders[0, picks]  # [2, 8, 8, 4]
    premultiplied = truth[..., :3] * truth[..., 3:]
    torch.testing.assert_close(rgb, premultiplied.reshape(2, 4, 2, 4, 2, 3).mean(dim=(2, 4)))  # 2x2 blocks
    torch.testing.assert_close(alpha, truth[..., 3:].reshape(2, 4, 2, 4, 2, 1).mean(dim=(2, 4)))


def test_the_loss_is_zero_on_the_ground_truth_and_reaches_the_renders():
    sample = sample_with_training_views(frames=1, train_frames=1)
    prior = OraclePrior(sample, needs_every_frame=False)
    cameras, elevations, azimuths, picks = prior.sample_cameras(2, 8, torch.Generator().manual_seed(2))
    views = ViewBatch(cameras, elevations, azimuths, 2.0, view_indices=picks)  # over white
    rgb, alpha = prior.targets(views, 8)
    assert prior.loss(rgb, alpha, views, 0.5).item() == 0.0
    colors = torch.full_like(rgb, 0.5, requires_grad=True)
    prior.loss(colors, alpha, views, 0.5).backward()
    assert colors.grad.abs().sum() > 0


def test_the_dynamic_oracle_needs_training_views_at_every_frame():
    with pytest.raises(DynaPoseError, match="every frame"):
        OraclePrior(sample_with_training_views(frames=3, train_frames=1), needs_every_frame=True)
    empty = sample_with_training_views(frames=1, train_frames=1)
    empty.train_views, empty.train_renders = [], torch.zeros(1, 0, 1, 1, 4)
    with pytest.raises(DynaPoseError, match="training views"):
        OraclePrior(empty, needs_every_frame=False)
