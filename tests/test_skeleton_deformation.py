"""deformation=skeleton: forward kinematics and skinning against poses computed by hand, fixed bone lengths,
the rest pose at the anchor frame, gradients into the pose, and a short run of the dynamic stage."""

import math

import pytest
import torch

from dynapose4d.deform import build_deformation, normalised_time
from dynapose4d.deform.anchored import AnchoredDeformation
from dynapose4d.deform.skeleton import Rig, skeleton_tree
from dynapose4d.errors import DynaPoseError
from dynapose4d.geometry import axis_angle_quat, quat_multiply
from dynapose4d.keypoints import project_points

# An L: joints 0 - 1 - 2 along x, then 2 - 3 up y. The joint nearest the centroid (1.25, 0.25, 0) is 1: the root.
JOINTS = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [2.0, 1.0, 0.0]])
EDGES = [(0, 1), (1, 2), (2, 3)]
RESIDUAL = {"resolution": [4, 4, 4, 3], "multires": [1], "feature_dim": 4, "width": 8, "depth": 1,
            "bounds": 3.0, "bounds_padding": 0.1}  # fmt: skip
Z = torch.tensor([0.0, 0.0, 1.0])


def skeleton(num_frames=3, anchor_frame=0, residual=None, skin_radius=0.01, joints=JOINTS, edges=EDGES, stretch=False):
    rig = Rig(joints, edges, num_frames, anchor_frame)
    settings = {"skin_radius": skin_radius, "pose_lr_scale": 10.0, "residual": residual, "stretch": stretch}
    return build_deformation("skeleton", settings, torch.zeros(1, 3), rig)


def rotation_z(degrees: float) -> torch.Tensor:
    angle = math.radians(degrees)
    return torch.tensor([[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0], [0, 0, 1]])


def set_pose(field, knot: int, rotations: dict[int, float], translation) -> None:
    """Pose knot `knot`: joint -> degrees about +z (the root's turns the body, a bone's about its parent joint)."""
    with torch.no_grad():
        for joint, degrees in rotations.items():
            quat = axis_angle_quat(Z, torch.tensor(math.radians(degrees)))
            field.rotations[knot, joint] = quat - torch.tensor([1.0, 0.0, 0.0, 0.0])  # normalize(1 + r) = quat
        field.translations[knot] = torch.tensor(translation)


def random_pose(field, seed=0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        field.rotations.copy_(0.4 * torch.randn(field.rotations.shape, generator=generator))
        field.translations.copy_(0.2 * torch.randn(field.translations.shape, generator=generator))


def test_the_tree_is_rooted_near_the_centroid_and_parents_come_first():
    order, parents = skeleton_tree(JOINTS, EDGES)
    assert order == [1, 0, 2, 3] and parents == [1, -1, 1, 2]


def test_the_tree_drops_a_cycle_and_joins_a_lost_joint_by_the_shortest_segment():
    joints = torch.cat([JOINTS, torch.tensor([[2.0, 1.5, 0.0]])])  # joint 4 sits 0.5 above joint 3, with no edge
    order, parents = skeleton_tree(joints, [*EDGES, (0, 2)])  # 0 - 1 - 2 - 0 is a cycle
    assert sorted(order) == [0, 1, 2, 3, 4] and parents[4] == 3
    assert sum(parent < 0 for parent in parents) == 1  # one tree: four bones for five joints
    assert all(order.index(parents[j]) < order.index(j) for j in order if parents[j] >= 0)


def test_forward_kinematics_and_skinning_match_the_pose_computed_by_hand():
    field = skeleton()
    set_pose(field, knot=2, rotations={1: 90.0, 3: -90.0}, translation=[0.0, 0.0, 1.0])  # the root, bone 2 -> 3
    t = normalised_time(torch.tensor([2.0]), 3)
    quarter, back = rotation_z(90), rotation_z(-90)
    c1, c2, lift = JOINTS[1], JOINTS[2], torch.tensor([0.0, 0.0, 1.0])

    def root(x):  # the whole body turns 90 degrees about joint 1, then rises by 1
        return quarter @ (x - c1) + c1 + lift

    def bone_3(x):  # the bone 2 -> 3 turns back by 90 degrees about joint 2, then rides on the root
        return root(back @ (x - c2) + c2)

    expected_joints = torch.stack([root(JOINTS[0]), root(c1), root(c2), bone_3(JOINTS[3])])
    torch.testing.assert_close(field.joints_at(t)[0], expected_joints)
    torch.testing.assert_close(expected_joints[3], torch.tensor([1.0, 2.0, 1.0]))  # as drawn on paper

    # On bone 1 -> 0, on bone 2 -> 3, and halfway between the bones 1 -> 2 and 2 -> 3 (equal weights).
    points = torch.tensor([[0.5, 0.0, 0.0], [2.0, 0.5, 0.0], [2.0, -0.5, 0.0]])
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).expand(3, 4)
    means, turned, scales = field(points, quats, torch.zeros(3, 3), t)
    torch.testing.assert_close(means[0, 0], root(points[0]))
    torch.testing.assert_close(means[0, 1], bone_3(points[1]))
    torch.testing.assert_close(means[0, 2], 0.5 * root(points[2]) + 0.5 * bone_3(points[2]))
    body_turn = axis_angle_quat(Z, torch.tensor(math.pi / 2))
    torch.testing.assert_close(turned[0, 0], body_turn)
    torch.testing.assert_close(turned[0, 1], torch.tensor([1.0, 0.0, 0.0, 0.0]))  # +90 then -90: unturned
    torch.testing.assert_close(turned[0, 2], quat_multiply(axis_angle_quat(Z, torch.tensor(math.pi / 4)), quats[2]))
    assert torch.equal(scales, torch.zeros(1, 3, 3))


def test_bones_keep_their_rest_length_at_every_time():
    field = skeleton(num_frames=5)
    random_pose(field)
    joints = field.joints_at(torch.linspace(-1, 1, 9))  # [9, J, 3]: the knots and between them
    for child, parent in enumerate(field.parents):
        if parent >= 0:
            rest = (JOINTS[child] - JOINTS[parent]).norm()
            torch.testing.assert_close((joints[:, child] - joints[:, parent]).norm(dim=-1), rest.expand(9))


def test_a_stretching_bone_grows_along_itself_carries_its_children_and_is_penalised():
    """Bone 2 -> 3 (up y) twice as long and turned -90 degrees at knot 2: worked out by hand as above."""
    field = skeleton(stretch=True)
    set_pose(field, knot=2, rotations={3: -90.0}, translation=[0.0, 0.0, 0.0])
    with torch.no_grad():
        field.stretches[2, 3] = math.log(2.0)
        field.stretches[0, 3] = 5.0  # the anchor knot: masked, the rest pose whatever it holds
    t = normalised_time(torch.tensor([2.0, 0.0]), 3)
    joints = field.joints_at(t)
    torch.testing.assert_close(joints[0, 3], torch.tensor([4.0, 0.0, 0.0]))  # (2, 0) + 2 x (1, 0): turned, doubled
    torch.testing.assert_close(joints[0, :3], JOINTS[:3])
    torch.testing.assert_close(joints[1], JOINTS)

    # Halfway up the bone and 0.005 off it (within the skinning radius): halfway along the longer bone, as far off.
    point = torch.tensor([[2.005, 0.5, 0.0]])
    means, _, _ = field(point, torch.tensor([[1.0, 0.0, 0.0, 0.0]]), torch.zeros(1, 3), t[:1])
    torch.testing.assert_close(means[0, 0], torch.tensor([3.0, -0.005, 0.0]))

    penalty = field.stretch_penalty(t[:1])
    torch.testing.assert_close(penalty, torch.tensor(math.log(2.0) ** 2 / 3))  # one of three bones stretched
    penalty.backward()
    assert field.stretches.grad[2, 3] > 0 and field.stretches.grad[0].abs().sum() == 0
    assert skeleton().stretch_penalty(t) is None  # fixed lengths: nothing to hold


def test_the_anchor_frame_is_the_rest_pose_whatever_the_pose_parameters():
    field = skeleton(num_frames=4, anchor_frame=1, residual=RESIDUAL, skin_radius=0.3)
    random_pose(field)
    for parameter in field.residual.parameters():
        torch.nn.init.normal_(parameter, std=0.1)
    anchor = normalised_time(torch.tensor([1.0]), 4)
    assert torch.equal(field.joints_at(anchor)[0], JOINTS)
    anchored = AnchoredDeformation(field, anchor.item())
    means = torch.rand(40, 3) * torch.tensor([2.0, 1.0, 0.2])
    quats = torch.nn.functional.normalize(torch.randn(40, 4), dim=-1)
    log_scales = torch.randn(40, 3)
    new_means, new_quats, new_scales = anchored(means, quats, log_scales, anchor)
    assert torch.equal(new_means[0], means) and torch.equal(new_scales[0], log_scales)
    torch.testing.assert_close(new_quats[0], quats)
    moved = anchored(means, quats, log_scales, normalised_time(torch.tensor([3.0]), 4))[0]
    assert (moved - means).abs().max() > 0.05  # and elsewhere it moves
    torch.testing.assert_close(anchored.keypoints_at(JOINTS, anchor)[0], JOINTS)


def test_a_new_field_is_the_identity():
    field = skeleton(residual=RESIDUAL, skin_radius=0.3)
    means, quats = torch.rand(30, 3), torch.nn.functional.normalize(torch.randn(30, 4), dim=-1)
    new_means, new_quats, _ = field(means, quats, torch.zeros(30, 3), torch.linspace(-1, 1, 3))
    assert torch.equal(new_means, means.expand(3, 30, 3)) and torch.equal(new_quats, quats.expand(3, 30, 4))


def test_gradients_reach_the_pose_the_skinning_and_the_residual():
    field = skeleton(num_frames=3, residual=RESIDUAL, skin_radius=0.3)
    random_pose(field, seed=1)
    t = normalised_time(torch.tensor([2.0]), 3)
    means = torch.rand(30, 3) * torch.tensor([2.0, 1.0, 0.1])
    moved = field.deform_points(means, t)
    (moved - means).square().sum().backward()
    assert field.rotations.grad[2].abs().sum() > 0 and field.translations.grad[2].abs().sum() > 0
    assert field.rotations.grad[0].abs().sum() == 0  # the anchor frame's knot is not a parameter
    assert field.log_radii.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in field.residual.parameters())

    field.zero_grad()
    field.keypoints_at(JOINTS, t).square().sum().backward()  # KML's lift mode: the posed joints directly
    assert field.rotations.grad[2].abs().sum() > 0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in field.residual.parameters())
    with pytest.raises(ValueError, match="keypoints are its rig's joints"):
        field.keypoints_at(JOINTS + 0.01, t)  # other points have no joint to follow


def test_too_few_keypoints_for_a_skeleton_say_what_to_use_instead():
    with pytest.raises(DynaPoseError, match="at least 3 support keypoints.*deformation=hexplane"):
        skeleton(joints=JOINTS[:2], edges=[(0, 1)])


@pytest.mark.parametrize("stretch", [False, True], ids=["fixed lengths", "stretch"])
def test_the_dynamic_stage_trains_the_skeleton_and_its_keypoints_follow(dynamic_stage, stretch):
    stage = dynamic_stage("dynamic/deformation=skeleton", "dynamic.kml_mode=lift", "dynamic.loss.residual=100",
                          "dynamic.deformation.residual.resolution=[8,8,8,2]", f"dynamic.deformation.stretch={stretch}",
                          "dynamic.loss.bone_stretch=10")  # fmt: skip
    assert set(stage.terms) >= {"kml", "scl", "residual"} and ("bone_stretch" in stage.terms) == stretch
    frames = torch.tensor([1])
    before = stage.terms["kml"](_batch(frames)).item()
    for _ in range(4):
        losses = stage.train_step()
    assert all(math.isfinite(value) for value in losses.values())
    assert stage.terms["kml"](_batch(frames)).item() < before
    assert stage.deformation.rotations.grad is not None
    assert (stage.deformation.stretches is not None and stage.deformation.stretches.grad.abs().sum() > 0) == stretch
    # KML's lifted keypoints are the rig: the support keypoints lifted onto the static model, on their rays.
    assert stage.lifted_keypoints is stage.deformation.joints
    camera = stage.camera
    reprojected = project_points(stage.deformation.joints[None], camera.viewmats, camera.Ks)[0]  # [N, 2]
    torch.testing.assert_close(reprojected, stage.keypoints[0], atol=1e-3, rtol=0)


def _batch(frames):
    from dynapose4d.stages.terms import DynamicBatch

    return DynamicBatch(None, None, frames)
