"""The wobbling blob: the synthetic subject without a skeleton (non-rigid, periodic, framed, a valid sample)."""

import pytest
import torch
from conftest import compose_config

from dynapose4d.cameras import reference_camera
from dynapose4d.data.blob import WobblingBlob
from dynapose4d.data.synthetic import JOINT_COUNT, build_sample, make_subject
from dynapose4d.geometry import quat_to_matrix
from dynapose4d.keypoints import project_points
from dynapose4d.validation import validate_settings

FRAMES = 8


@pytest.fixture(scope="module")
def blob() -> WobblingBlob:
    return make_subject("blob", num_frames=FRAMES, seed=2, num_gaussians=1500)


def keypoints_over_time(blob) -> torch.Tensor:
    return torch.stack([blob.joints_at(t) for t in range(blob.num_frames)])  # [T, J, 3]


def test_the_blob_has_a_tree_of_keypoints_and_a_periodic_continuous_motion(blob):
    assert len(blob.joint_names) == JOINT_COUNT and blob.parents[0] == -1
    assert all(0 <= parent < joint for joint, parent in enumerate(blob.parents) if joint)
    torch.testing.assert_close(blob.joints_at(FRAMES), blob.joints_at(0), atol=1e-5, rtol=0)
    torch.testing.assert_close(blob.gaussians_at(FRAMES)["means"], blob.gaussians_at(0)["means"], atol=1e-5, rtol=0)
    steps = (blob.joints_at(0.01) - blob.joints_at(0)).norm(dim=-1)
    assert steps.max() < 0.01  # continuous


def test_no_rigid_segment_explains_the_motion(blob):
    """What a skeleton cannot do: every edge of the keypoints' tree changes its length over the clip."""
    keypoints = keypoints_over_time(blob)
    lengths = torch.stack(
        [(keypoints[:, j] - keypoints[:, p]).norm(dim=-1) for j, p in enumerate(blob.parents) if p >= 0], dim=1
    )  # [T, J - 1]
    relative_range = (lengths.amax(0) - lengths.amin(0)) / lengths.mean(0)
    assert relative_range.min() > 0.05 and relative_range.median() > 0.15
    spread = (keypoints.amax(0) - keypoints.amin(0)).amax(0)  # [3]
    assert spread[0] > 0.08 and spread[2] > 0.08  # image-plane and depth motion, as the articulated kinds


def test_the_jacobian_matches_autograd_and_the_gaussians_lie_flat_on_the_moved_surface(blob):
    points = blob.rest_gaussians["means"][:50]
    frame = 3.0
    exact = torch.stack(
        [torch.autograd.functional.jacobian(lambda p: blob.field(p[None], frame)[0], point) for point in points]
    )  # [50, 3, 3]
    torch.testing.assert_close(blob._jacobian(points, frame), exact, atol=1e-4, rtol=1e-4)
    # The flat axis (third column of the rotation) is the moved surface's normal: orthogonal to both
    # tangent directions pushed forward by the Jacobian.
    normals = blob.rest_gaussians["normals"][:50]
    tangent = torch.nn.functional.normalize(torch.linalg.cross(normals, torch.randn(50, 3)), dim=-1)
    moved_tangent = (exact @ tangent[..., None])[..., 0]
    flat_axis = quat_to_matrix(blob.gaussians_at(frame)["quats"][:50])[..., 2]
    assert (flat_axis * moved_tangent).sum(-1).abs().max() < 1e-3 * moved_tangent.norm(dim=-1).max()


def test_the_sample_shows_the_blob_under_its_keypoints(blob):
    sample = build_sample(blob, resolution=48, eval_azimuths=(90.0,))
    assert sample.keypoints.frames.shape == (FRAMES, JOINT_COUNT, 2)
    assert len(sample.keypoints.bones) == JOINT_COUNT - 1
    camera = reference_camera(48, 48)
    torch.testing.assert_close(sample.keypoints.frames[5], project_points(blob.joints_at(5)[None], camera.viewmats,
                                                                          camera.Ks)[0])  # fmt: skip
    pixels = sample.keypoints.frames.round().long().clamp(0, 47)  # [T, J, 2] (x, y)
    alpha = sample.driving_video[..., 3]  # [T, 48, 48]
    covered = alpha[torch.arange(FRAMES)[:, None], pixels[..., 1], pixels[..., 0]]
    assert covered.min() > 0.5  # the keypoints are inside the body, in every driving frame


def test_the_blob_is_a_synthetic_kind_the_config_accepts():
    validate_settings(compose_config(["experiment=synthetic", "synthetic.kind=blob"]))
    with pytest.raises(ValueError, match="motion 'walk' is not defined for 'blob'; choose one of \\['wobble'\\]"):
        make_subject("blob", motion="walk")
    a, b = make_subject("blob", 4, seed=0, num_gaussians=200), make_subject("blob", 4, seed=1, num_gaussians=200)
    assert not torch.equal(a.joints_at(1), b.joints_at(1))
