"""The oracle prior: ground truth of the synthetic subject at each view's own frame and background."""

import torch

from dynapose4d.cameras import sample_orbit_cameras
from dynapose4d.data.synthetic import make_subject
from dynapose4d.priors import ViewBatch
from dynapose4d.priors.oracle import OraclePrior


def test_targets_render_each_view_at_its_frame_over_its_background():
    subject = make_subject("quadruped", num_frames=3, seed=0, num_gaussians=300)
    cameras, elevations, azimuths = sample_orbit_cameras(3, torch.Generator().manual_seed(0), width=24, height=24)
    backgrounds = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.2, 0.5, 0.9]])
    views = ViewBatch(cameras, elevations, azimuths, 2.0, frames=torch.tensor([2, 0, 2]), backgrounds=backgrounds)
    rgb, alpha = OraclePrior(subject).targets(views)
    for view, frame in enumerate([2, 0, 2]):
        expected_rgb, expected_alpha = subject.render(
            cameras[view], float(frame), background=backgrounds[view].tolist()
        )
        torch.testing.assert_close(rgb[view], expected_rgb[0])
        torch.testing.assert_close(alpha[view], expected_alpha[0])
    moved, _ = subject.render(cameras[0], 0.0)
    assert not torch.allclose(rgb[0], moved[0])  # frame 2 really differs from frame 0
