"""The camera convention: orbit positions, look-at matrices, and Zero123's relative camera vector."""

import math

import pytest
import torch

from dynapose4d.cameras import Cameras, orbit_cameras, orbit_position, reference_camera, zero123_camera_vector


def test_orbit_positions_follow_the_documented_convention():
    assert orbit_position(0.0, 0.0, 2.0).tolist() == pytest.approx([0, 0, 2])  # reference view on +z
    assert orbit_position(0.0, 90.0, 2.0).tolist() == pytest.approx([2, 0, 0], abs=1e-6)  # azimuth turns towards +x
    assert orbit_position(90.0, 0.0, 2.0).tolist() == pytest.approx([0, 2, 0], abs=1e-6)  # elevation > 0 is above


def test_reference_camera_looks_at_the_origin_with_world_up_pointing_up_in_the_image():
    camera = reference_camera(64, 64)
    origin = camera.viewmats[0] @ torch.tensor([0.0, 0.0, 0.0, 1.0])
    above = camera.viewmats[0] @ torch.tensor([0.0, 0.5, 0.0, 1.0])
    right = camera.viewmats[0] @ torch.tensor([0.5, 0.0, 0.0, 1.0])
    assert origin[:3].tolist() == pytest.approx([0, 0, 2])  # straight ahead at distance 2
    assert above[1] < 0 and right[0] > 0  # OpenCV: image y grows downwards, x to the right
    assert camera.positions[0].tolist() == pytest.approx([0, 0, 2])


def test_concat_keeps_all_cameras_and_rejects_mixed_sizes():
    both = Cameras.concat(reference_camera(32, 32), orbit_cameras([10.0, 20.0], [30.0, 40.0], width=32, height=32))
    assert len(both) == 3
    with pytest.raises(ValueError):
        Cameras.concat(reference_camera(32, 32), reference_camera(16, 16))


@pytest.mark.parametrize(
    ("elevation", "azimuth", "radius", "expected"),
    [
        (0.0, 0.0, 2.0, [0.0, 0.0, 1.0, 0.0]),  # the reference view itself
        (30.0, 0.0, 2.0, [-math.pi / 6, 0.0, 1.0, 0.0]),  # camera above: negative delta polar
        (-20.0, 0.0, 2.0, [math.radians(20), 0.0, 1.0, 0.0]),  # camera below: positive
        (0.0, 90.0, 2.0, [0.0, 1.0, 0.0, 0.0]),  # a quarter turn towards +x
        (0.0, -180.0, 2.5, [0.0, 0.0, -1.0, 0.5]),  # behind, farther away
    ],
)
def test_zero123_camera_vector_hand_computed_cases(elevation, azimuth, radius, expected):
    vector = zero123_camera_vector([elevation], [azimuth], [radius])
    assert vector.shape == (1, 4)
    assert vector[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_stable_zero123_uses_the_reference_polar_angle_instead_of_the_radius():
    vector = zero123_camera_vector([30.0, 0.0], [45.0, 90.0], [2.5, 2.0], reference_elevation=10.0, stable=True)
    assert vector[:, 3].tolist() == pytest.approx([math.radians(80.0)] * 2)  # 90 - 10 degrees, for every target
    assert vector[0, 0].item() == pytest.approx(math.radians(10.0 - 30.0))
    assert vector[1, 1:3].tolist() == pytest.approx([1.0, 0.0], abs=1e-6)
