"""Consistent4D's evaluation views: its azimuths by default, and its azimuth convention mapped onto ours.

The reference is threestudio's orbit camera (threestudio/data/uncond_t.py, the code the benchmark's
author gives for reproducing its views), written out here: z up, the camera at
d (cos e cos a, cos e sin a, sin e) looking at the origin, OpenGL axes [right, up, back].
"""

import math

import pytest
import torch
from omegaconf import OmegaConf

from dynapose4d.cameras import intrinsics_from_fovy, orbit_cameras
from dynapose4d.errors import DynaPoseError
from dynapose4d.eval.layouts import CONSISTENT4D_AZIMUTHS
from dynapose4d.eval.runner import evaluation_azimuths

SIZE, RADIUS, FOVY = 256, 2.0, 49.1
# Their world (z up, the input camera on +x) in ours (y up, the input camera on +z): x -> z, y -> x, z -> y.
THEIRS_TO_OURS = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])


def threestudio_pixels(points: torch.Tensor, azimuth: float, elevation: float = 0.0) -> torch.Tensor:
    """Pixels [P, 2] of world points [P, 3] (their world) in threestudio's camera at `azimuth`."""
    a, e = math.radians(azimuth), math.radians(elevation)
    position = RADIUS * torch.tensor([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])
    lookat = -position / position.norm()
    right = torch.linalg.cross(lookat, torch.tensor([0.0, 0.0, 1.0]))
    right = right / right.norm()
    up = torch.linalg.cross(right, lookat)
    camera = (points - position) @ torch.stack([right, up, -lookat]).T  # [P, 3] OpenGL camera coordinates
    focal = 0.5 * SIZE / math.tan(math.radians(FOVY) / 2)
    depth = -camera[:, 2]
    return torch.stack([SIZE / 2 + focal * camera[:, 0] / depth, SIZE / 2 - focal * camera[:, 1] / depth], -1)


def our_pixels(points: torch.Tensor, azimuth: float) -> torch.Tensor:
    camera = orbit_cameras(0.0, azimuth, RADIUS, FOVY, SIZE, SIZE)
    local = points @ camera.viewmats[0, :3, :3].T + camera.viewmats[0, :3, 3]  # [P, 3] OpenCV camera
    projected = local @ intrinsics_from_fovy(FOVY, SIZE, SIZE).T
    return projected[:, :2] / projected[:, 2:]


@pytest.mark.parametrize("azimuth", CONSISTENT4D_AZIMUTHS)
def test_an_asymmetric_object_lands_where_the_benchmark_s_view_shows_it(azimuth):
    # An object with a distinct left, top and front, in their world; the same object in ours.
    theirs = torch.tensor([[0.3, 0.0, 0.0], [0.0, 0.4, 0.0], [0.0, 0.0, 0.5], [0.2, -0.3, 0.1], [-0.25, 0.1, -0.2]])
    ours = theirs @ THEIRS_TO_OURS.T
    torch.testing.assert_close(our_pixels(ours, azimuth), threestudio_pixels(theirs, azimuth), atol=1e-3, rtol=0)
    # The opposite sign would put it elsewhere: the mapping is not symmetric by accident.
    assert (our_pixels(ours, -azimuth) - threestudio_pixels(theirs, azimuth)).abs().max() > 5


def test_the_input_views_agree_and_the_mapping_is_a_rotation():
    assert torch.linalg.det(THEIRS_TO_OURS) == pytest.approx(1.0)
    point = torch.tensor([[0.1, 0.2, 0.3]])
    torch.testing.assert_close(our_pixels(point @ THEIRS_TO_OURS.T, 0.0), threestudio_pixels(point, 0.0))


def test_consistent4d_renders_at_its_own_views_unless_told():
    cfg = OmegaConf.create({"benchmark": "consistent4d", "views": {"azimuths": None}})
    assert evaluation_azimuths(cfg) == [-75.0, 15.0, 105.0, 195.0]
    cfg.views.azimuths = [0, 90]
    assert evaluation_azimuths(cfg) == [0.0, 90.0]
    with pytest.raises(DynaPoseError, match="animate124 publishes no evaluation cameras"):
        evaluation_azimuths(OmegaConf.create({"benchmark": "animate124", "views": {"azimuths": None}}))
