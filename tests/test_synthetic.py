"""The synthetic articulated subject: skeleton, motion, skinning, projection, framing, its ground-truth sample."""

import math

import pytest
import torch

from dynapose4d.cameras import REFERENCE_FOVY, orbit_cameras, reference_camera
from dynapose4d.data.sample import load_sample, save_sample
from dynapose4d.data.synthetic import JOINT_COUNT, TRAINING_AZIMUTHS, TRAINING_ELEVATIONS, build_sample, make_subject
from dynapose4d.keypoints import project_points

SUBJECTS = [("quadruped", "walk"), ("biped", "wave"), ("biped", "walk"), ("bird", "flap")]
FRAMES = 8


@pytest.fixture(scope="module", params=SUBJECTS, ids=lambda p: "-".join(p))
def subject(request):
    kind, motion = request.param
    return make_subject(kind, num_frames=FRAMES, seed=3, num_gaussians=600, motion=motion)


@pytest.fixture(scope="module")
def sample():
    return build_sample(make_subject("quadruped", num_frames=3, num_gaussians=800), resolution=64)


def all_joints(subject):
    return torch.stack([subject.joints_at(t) for t in range(subject.num_frames)])  # [T, J, 3]


def test_skeleton_is_a_tree_of_14_named_joints(subject):
    assert JOINT_COUNT == 14
    assert len(subject.joint_names) == len(set(subject.joint_names)) == JOINT_COUNT
    assert len(subject.parents) == JOINT_COUNT
    assert subject.parents[0] == -1
    # Parents listed first means every joint reaches the root: a tree with no cycles.
    assert all(0 <= p < j for j, p in enumerate(subject.parents) if j > 0)


def test_motion_is_large_periodic_and_continuous(subject):
    joints = all_joints(subject)
    displacement = (joints - joints[0]).norm(dim=-1)  # [T, J]
    assert displacement.max() > 0.1  # against a subject radius of about 0.8
    assert torch.allclose(subject.joints_at(FRAMES), joints[0], atol=1e-5)
    assert torch.allclose(subject.joints_at(FRAMES + 2.5), subject.joints_at(2.5), atol=1e-5)
    step = (subject.joints_at(1.01) - subject.joints_at(1.0)).norm(dim=-1).max()
    assert 0 < step < 0.01  # fractional frames move smoothly


def test_some_bone_turns_by_tens_of_degrees(subject):
    joints = all_joints(subject)
    parents = torch.tensor(subject.parents[1:])
    directions = torch.nn.functional.normalize(joints[:, 1:] - joints[:, parents], dim=-1)  # [T, J-1, 3]
    cosines = (directions * directions[:1]).sum(-1).clamp(-1, 1)
    assert torch.rad2deg(torch.acos(cosines)).max() > 25.0


def test_motion_is_seen_from_the_reference_view_and_in_depth():
    for kind in ("quadruped", "biped", "bird"):
        joints = all_joints(make_subject(kind, num_frames=FRAMES, num_gaussians=100))
        spread = (joints.amax(0) - joints.amin(0)).amax(0)  # [3] largest per-joint range along x, y, z
        assert spread[0] > 0.08, kind  # image-plane motion in the reference view
        assert spread[2] > 0.08, kind  # depth motion, which only other views resolve


def test_subject_is_framed_like_a_real_input_and_stays_in_every_view():
    """Frame 0 fills most of the reference view, centred (real images fill 80%); the motion never leaves a view."""
    for kind in ("quadruped", "biped", "bird", "blob"):
        subject = make_subject(kind, num_frames=8, num_gaussians=3000)
        views = orbit_cameras(*torch.meshgrid(torch.tensor(TRAINING_ELEVATIONS), torch.arange(0.0, 360.0, 45.0),
                                              indexing="ij"), width=96, height=96)  # fmt: skip
        for t in range(0, 8, 2):
            _, alpha = subject.render(views, t)  # [C, 96, 96, 1]
            border = torch.cat([alpha[:, [0, -1], :, 0].flatten(), alpha[:, :, [0, -1], 0].flatten()])
            assert border.max() < 0.05, (kind, t)
        _, alpha = subject.render(reference_camera(96, 96), 0)
        rows, columns = (alpha[0, ..., 0] > 0.5).any(1).nonzero()[:, 0], (alpha[0, ..., 0] > 0.5).any(0).nonzero()[:, 0]
        extent = max(rows[-1] - rows[0] + 1, columns[-1] - columns[0] + 1) / 96
        assert 0.5 < extent <= 0.82, (kind, extent)  # capped below 0.8 where the motion needs the room
        centre = torch.tensor([(columns[0] + columns[-1] + 1) / 2, (rows[0] + rows[-1] + 1) / 2]) / 96
        assert (centre - 0.5).abs().max() < 0.04, (kind, centre)


def test_subject_is_upright():
    quadruped, biped = make_subject("quadruped", num_gaussians=500), make_subject("biped", num_gaussians=500)
    names = biped.joint_names
    rest = biped.joints_at(0)
    assert rest[names.index("head"), 1] > rest[names.index("pelvis"), 1] > rest[names.index("left_ankle"), 1]
    assert rest[names.index("left_shoulder"), 0] > 0 > rest[names.index("right_shoulder"), 0]  # faces +z
    names, rest = quadruped.joint_names, quadruped.joints_at(0)
    head, pelvis = rest[names.index("head")], rest[names.index("pelvis")]
    assert head[0] > pelvis[0] and head[2] > pelvis[2]  # three-quarter view, head towards the camera
    assert rest[names.index("front_left_paw"), 1] < pelvis[1]


def test_bone_lengths_are_preserved(subject):
    joints = all_joints(subject)
    lengths = (joints[:, 1:] - joints[:, subject.parents[1:]]).norm(dim=-1)  # [T, J-1]
    assert torch.allclose(lengths, lengths[:1].expand_as(lengths), atol=1e-5)


def test_gaussians_are_rigidly_attached_to_their_bones(subject):
    bones = subject.rest_gaussians["bones"]  # [N] joint that ends each Gaussian's bone
    parents = torch.tensor(subject.parents)[bones]

    def distances(frame):
        means, joints = subject.gaussians_at(frame)["means"], subject.joints_at(frame)
        return torch.stack([(means - joints[bones]).norm(dim=-1), (means - joints[parents]).norm(dim=-1)])

    for t in range(1, FRAMES):
        assert torch.allclose(distances(t), distances(0), atol=1e-5)


def quat_matrix(q):
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def test_gaussian_orientations_turn_with_their_bone(subject):
    start, later = subject.gaussians_at(0), subject.gaussians_at(FRAMES // 4)
    assert torch.allclose(later["quats"].norm(dim=-1), torch.ones(len(later["quats"])), atol=1e-5)
    # Each Gaussian's rotation change must be the rigid motion of its bone: it carries the
    # offset from the bone's parent joint to the Gaussian along with it.
    relative = quat_matrix(later["quats"]) @ quat_matrix(start["quats"]).transpose(1, 2)  # [N, 3, 3]
    parents = torch.tensor(subject.parents)[subject.rest_gaussians["bones"]]
    offset_start = start["means"] - subject.joints_at(0)[parents]
    offset_later = later["means"] - subject.joints_at(FRAMES // 4)[parents]
    assert torch.allclose((relative @ offset_start[:, :, None])[..., 0], offset_later, atol=1e-5)


def test_gaussian_parameters_are_activated_and_textured(subject):
    params = subject.gaussians_at(0)
    assert params["means"].shape == (600, 3) and params["colors"].shape == (600, 3)
    assert (params["scales"] > 0).all() and params["scales"].max() < 0.05
    assert ((params["opacities"] > 0.8) & (params["opacities"] < 1)).all()
    assert ((params["colors"] >= 0) & (params["colors"] <= 1)).all()
    bones = subject.rest_gaussians["bones"]
    torso = params["colors"][bones == 1]  # the largest capsule: its texture must vary
    assert torso.std(dim=0).max() > 0.05


def test_project_points_matches_an_independent_pinhole():
    width, height = 96, 64
    focal = 0.5 * height / math.tan(math.radians(REFERENCE_FOVY) / 2)
    elevations, azimuths = torch.tensor([0.0, 0.0, 20.0]), torch.tensor([0.0, 90.0, 200.0])
    cameras = orbit_cameras(elevations, azimuths, width=width, height=height)
    centre = project_points(torch.zeros(1, 3), cameras.viewmats, cameras.Ks)
    assert torch.allclose(centre, torch.tensor([width / 2, height / 2]).expand(3, 1, 2), atol=1e-4)

    points = torch.rand(20, 3, generator=torch.Generator().manual_seed(0)) - 0.5
    x, y, z = points.unbind(-1)
    # Reference camera at (0, 0, 2) looking down -z: camera x = world x, camera y = -world y.
    front = torch.stack([focal * x / (2 - z) + width / 2, -focal * y / (2 - z) + height / 2], -1)
    # Azimuth 90: camera at (2, 0, 0) looking down -x, its right is world -z.
    side = torch.stack([-focal * z / (2 - x) + width / 2, -focal * y / (2 - x) + height / 2], -1)
    projected = project_points(points, cameras.viewmats, cameras.Ks)
    assert torch.allclose(projected[0], front, atol=1e-3)
    assert torch.allclose(projected[1], side, atol=1e-3)


def test_sample_keypoints_are_projected_joints(sample):
    subject = make_subject("quadruped", num_frames=3, num_gaussians=800)
    reference = reference_camera(64, 64)
    for t in range(3):
        joints = project_points(subject.joints_at(t), reference.viewmats, reference.Ks)[0]
        assert torch.allclose(sample.keypoints.frames[t], joints, atol=1e-4)
    assert torch.equal(sample.image, sample.driving_video[0])
    assert sample.keypoints.frames.shape == (3, JOINT_COUNT, 2) and len(sample.keypoints.bones) == JOINT_COUNT - 1
    assert sample.eval_renders.shape == (3, 4, 64, 64, 4)
    assert all(view["azimuth"] % 360 != 0 for view in sample.eval_views)
    count = len(TRAINING_ELEVATIONS) * len(TRAINING_AZIMUTHS)
    assert sample.train_renders.shape == (1, count, 64, 64, 4)  # frame 0 only, by default
    training = {(view["elevation"], view["azimuth"]) for view in sample.train_views}
    assert not training & {(view["elevation"], view["azimuth"]) for view in sample.eval_views}  # held out


def test_sample_images_show_the_subject_under_its_keypoints(sample):
    alpha, rgb = sample.image[..., 3], sample.image[..., :3]
    assert 0.05 < (alpha > 0.5).float().mean() < 0.5
    assert torch.all(rgb[alpha == 0] == 0)  # straight alpha: no colour where nothing is drawn
    over_white = rgb * alpha[..., None] + (1 - alpha[..., None])
    rendered, _ = make_subject("quadruped", num_frames=3, num_gaussians=800).render(reference_camera(64, 64), 0)
    torch.testing.assert_close(over_white, rendered[0], atol=2e-5, rtol=0)  # compositing gives the render back
    # Joints sit inside their capsules, so each projects onto (or next to) foreground.
    padded = torch.nn.functional.max_pool2d(alpha[None, None], 3, stride=1, padding=1)[0, 0]
    pixels = sample.keypoints.support.floor().long().clamp(0, 63)
    assert (padded[pixels[:, 1], pixels[:, 0]] > 0.5).all()
    assert (sample.eval_renders[..., 3] > 0.5).float().mean(dim=(2, 3)).min() > 0.01  # every view sees it
    assert not torch.allclose(sample.driving_video[0], sample.driving_video[1], atol=0.05)  # it moves
    assert not torch.allclose(sample.eval_renders[0, 0], sample.image, atol=0.05)  # another view
    # The training view at the reference camera is the input image.
    front = sample.train_views.index({"elevation": 0.0, "azimuth": 0.0})
    torch.testing.assert_close(sample.train_renders[0, front], sample.image)


def test_training_views_at_every_frame_for_the_dynamic_oracle():
    subject = make_subject("biped", num_frames=2, seed=0, num_gaussians=300)
    sample = build_sample(subject, resolution=16, training_views_every_frame=True)
    assert sample.train_renders.shape[:2] == (2, len(sample.train_views))
    assert not torch.allclose(sample.train_renders[0], sample.train_renders[1], atol=0.05)  # it moves there too


def test_seed_decides_the_subject():
    def small(seed):
        return build_sample(make_subject("biped", num_frames=2, seed=seed, num_gaussians=300), resolution=32)

    first, again, other = small(0), small(0), small(1)
    assert torch.equal(first.image, again.image) and torch.equal(first.eval_renders, again.eval_renders)
    assert torch.equal(first.keypoints.frames, again.keypoints.frames)
    assert not torch.allclose(first.keypoints.frames, other.keypoints.frames, atol=1e-1)
    assert not torch.allclose(first.image, other.image, atol=1e-2)


def test_the_synthetic_sample_round_trips_through_the_format(sample, tmp_path):
    save_sample(sample, tmp_path)
    assert (tmp_path / "image.png").exists() and (tmp_path / "driving" / "002.png").exists()
    assert (tmp_path / "eval" / "03" / "002.png").exists() and (tmp_path / "train" / "89" / "000.png").exists()
    loaded = load_sample(tmp_path)
    for name in ("image", "driving_video", "eval_renders", "train_renders"):
        original, restored = getattr(sample, name), getattr(loaded, name)
        assert restored.shape == original.shape
        assert (restored - original).abs().max() <= 0.5 / 255 + 1e-6
    assert torch.allclose(loaded.keypoints.frames, sample.keypoints.frames, atol=1e-6)
    assert loaded.keypoints.names == sample.keypoints.names and loaded.keypoints.bones == sample.keypoints.bones
    assert loaded.eval_views == sample.eval_views and loaded.train_views == sample.train_views
    assert loaded.reference == sample.reference and (loaded.name, loaded.kind) == ("quadruped", "quadruped")
    torch.testing.assert_close(loaded.eval_cameras().viewmats, sample.eval_cameras().viewmats)


def test_bad_requests_are_refused():
    with pytest.raises(ValueError, match="kind"):
        make_subject("octopus")
    with pytest.raises(ValueError, match="motion"):
        make_subject("quadruped", motion="wave")
    with pytest.raises(ValueError, match="azimuth"):
        build_sample(make_subject("biped", num_frames=1, num_gaussians=50), resolution=16, eval_azimuths=(0.0, 90.0))
