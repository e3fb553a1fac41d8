"""Skeleton-driven deformation: the support skeleton's bones move the Gaussians rigidly, a small field refines.

The design of SkeletonGaussian (AAAI 2026: LBS for rigid motion, a hexplane for the rest) on
DynaPose4D's own keypoints. A free field lets a limb smear through depth, because the reference
view pins only its projection; a bone of fixed length can only turn.

    rig       the support keypoints lifted onto the static model (the canonical pose) and the
              support skeleton's edges, made a tree rooted at the joint nearest their centroid
              (`skeleton_tree`); each non-root joint j ends one bone, from its parent p(j) to j
    pose(t)   a root rotation about the root joint, a root translation T, and one local rotation per
              bone about its parent joint, stored at one knot per driving frame, linear in between;
              the anchor frame's knot is the rest pose, not a parameter
    FK        G_root(x) = R_0 (x - c_0) + c_0 + T,    G_j = G_p(j) o [x -> R_j (x - c_p(j)) + c_p(j)]
              so joint j sits at P_j = G_j(c_j) and every bone keeps its rest length at every time
    skinning  a Gaussian at x follows bone b with weight softmax_b(-d_b(x)^2 / 2 r_b^2), d_b its distance
              to the bone's rest segment, r_b learnable (initially skin_radius x the median bone length)
    residual  a small hexplane (hexplane.py) moves, turns and scales the Gaussians in canonical space
              before skinning: the non-rigid part (cloth, a tail between keypoints)

Rotations are quaternion residuals around the identity (normalize(1 + r), r = 0 at init), as in the
other fields, so the field starts as the identity and is exactly the identity at the anchor frame
(residual aside: the anchored wrapper removes that).
"""

import logging
from collections import deque
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import DynaPoseError
from ..geometry import quat_multiply, quat_to_matrix, unit_quats
from ..rules import Boolean, Nullable, Number
from . import DEFORMATIONS, Deformation
from .hexplane import SETTINGS as HEXPLANE_SETTINGS
from .hexplane import HexPlaneDeformation

log = logging.getLogger(__name__)
MIN_JOINTS = 3  # two bones: fewer is one rigid body, which the hexplane covers better


@dataclass
class Rig:
    """What a skeleton-driven field is built on, from the keypoints stage and the static model."""

    joints: torch.Tensor  # [J, 3] the support keypoints lifted onto the static model: the rest pose
    edges: list[tuple[int, int]]  # the support skeleton (indices into joints)
    num_frames: int  # driving frames: one pose knot each
    anchor_frame: int | None  # the frame whose pose is the rest pose exactly; None: every knot is free


def skeleton_tree(joints: torch.Tensor, edges: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """A tree over `joints` [J, 3] from `edges`: (joint order, parents first; parent per joint, -1 for the root).

    The root is the joint nearest the joints' centroid (a torso point more often than a limb's
    end). Breadth-first over the edges; an edge closing a cycle is dropped, and joints the edges
    do not reach are joined by the shortest segment to the tree (both logged).
    """
    count = len(joints)
    neighbours = [[] for _ in range(count)]
    for a, b in edges:
        neighbours[a].append(b)
        neighbours[b].append(a)
    root = int((joints - joints.mean(dim=0)).norm(dim=-1).argmin())
    parents, order = [-1] * count, [root]
    seen, queue, joined = {root}, deque([root]), 0
    while len(order) < count:
        if not queue:  # another component: attach its joint nearest to the tree
            inside, outside = sorted(seen), [j for j in range(count) if j not in seen]
            distances = torch.cdist(joints[outside], joints[inside])  # [O, I]
            flat = int(distances.argmin())
            child, parent = outside[flat // len(inside)], inside[flat % len(inside)]
            parents[child], joined = parent, joined + 1
            seen.add(child)
            order.append(child)
            queue.append(child)
        joint = queue.popleft()
        for other in sorted(neighbours[joint]):
            if other not in seen:
                parents[other] = joint
                seen.add(other)
                order.append(other)
                queue.append(other)
    dropped = len({tuple(sorted(edge)) for edge in edges}) - (count - 1 - joined)
    if joined or dropped:
        log.info("skeleton: %d edge(s) closing a cycle dropped, %d joint group(s) joined by the shortest segment",
                 dropped, joined)  # fmt: skip
    return order, parents


def segment_distances(points: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """Distance [P, S] from each of `points` [P, 3] to each segment starts[s] -> ends[s] ([S, 3] each)."""
    direction = ends - starts  # [S, 3]
    along = ((points[:, None] - starts) * direction).sum(-1) / direction.square().sum(-1).clamp_min(1e-12)
    nearest = starts + along.clamp(0, 1)[..., None] * direction  # [P, S, 3]
    return (points[:, None] - nearest).norm(dim=-1)


@DEFORMATIONS.register(
    "skeleton",
    schema={
        "skin_radius": Number(above=0),
        "pose_lr_scale": Number(above=0),
        "stretch": Boolean(),
        "residual": Nullable(HEXPLANE_SETTINGS),
    },
)
class SkeletonDeformation(Deformation):
    """Forward kinematics of the support skeleton + linear blend skinning + a residual hexplane.

    Args:
        means: [N, 3] canonical centres (only the residual field's box reads them).
        rig: the lifted support skeleton (`Rig`).
        skin_radius: initial skinning radius of every bone, as a fraction of the median bone length.
        pose_lr_scale: the pose's learning rate / dynamic.lr.deformation (per-frame angles must travel
            a radian in a few hundred steps; 10, the hexplane planes' ratio, jittered more than 3).
        stretch: bones may change length over time: a log-length per bone and knot (0 at init and at the
            anchor), for support points that are not joints (an edge across a knee); `dynamic.loss.bone_stretch`
            holds it near 0. False: lengths fixed by construction.
        residual: the residual hexplane's settings (deformation=hexplane's keys); None: bones only.
    """

    needs_rig = True

    def __init__(
        self,
        means: torch.Tensor,
        rig: Rig,
        skin_radius: float = 0.15,
        pose_lr_scale: float = 3.0,
        stretch: bool = False,
        residual: dict | None = None,
    ):
        super().__init__()
        joints = rig.joints.detach().to(means)
        if len(joints) < MIN_JOINTS:
            raise DynaPoseError(
                f"dynamic/deformation=skeleton needs at least {MIN_JOINTS} support keypoints, the keypoints stage "
                f"has {len(joints)}: use dynamic/deformation=hexplane, or more keypoints (keypoints.num_keypoints)"
            )
        if not torch.isfinite(joints).all():
            raise DynaPoseError("dynamic/deformation=skeleton: a support keypoint did not lift onto the static model")
        self.order, self.parents = skeleton_tree(joints, rig.edges)
        self.bones = [j for j in self.order if self.parents[j] >= 0]  # bone b ends at joint bones[b]...
        self.bone_parents = [self.parents[j] for j in self.bones]  # ...and turns about joint bone_parents[b]
        self.register_buffer("joints", joints)  # [J, 3]
        vectors = joints[self.bones] - joints[self.bone_parents]  # [bones, 3] rest bones, parent to child
        lengths = vectors.norm(dim=-1)  # [bones]
        # [bones, 3]; derived from the joints, so not saved: checkpoints from before stretch load as they are
        self.register_buffer("directions", vectors / lengths[:, None].clamp_min(1e-12), persistent=False)
        radius = skin_radius * lengths.median().clamp_min(1e-6)
        log_radii = torch.full((len(self.bones),), float(torch.log(radius)), device=means.device)  # [bones]
        self.log_radii = torch.nn.Parameter(log_radii)
        knots = max(int(rig.num_frames), 1)
        # Knot k holds the pose at frame k: a rotation residual per joint (the root's turns the whole body about
        # it, a bone's about its parent joint) and the root's translation.
        self.rotations = torch.nn.Parameter(torch.zeros(knots, len(joints), 4, device=means.device))
        self.translations = torch.nn.Parameter(torch.zeros(knots, 3, device=means.device))
        # A bone's log-length change, per knot and joint (the bone ending there; the root's is unused).
        self.stretches = torch.nn.Parameter(torch.zeros(knots, len(joints), device=means.device)) if stretch else None
        free = torch.ones(knots, 1, device=means.device)
        if rig.anchor_frame is not None and rig.anchor_frame < knots:
            free[rig.anchor_frame] = 0.0
        self.register_buffer("free", free)  # [K, 1] 0 at the anchor frame's knot: its pose is the rest pose
        self.pose_lr_scale = float(pose_lr_scale)
        self.residual = None if residual is None else HexPlaneDeformation(means, **residual)

    # ----- pose and kinematics ----------------------------------------------------------------

    def pose(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rotation residuals [B, J, 4], root translations [B, 3] and bone log-lengths [B, J] (0 without stretch)
        at times `t` [B], linear between the knots."""
        stretches = torch.zeros_like(self.rotations[..., 0]) if self.stretches is None else self.stretches
        knots = [knot * _leading(self.free[:, 0], knot) for knot in (self.rotations, self.translations, stretches)]
        count = self.rotations.shape[0]
        if count == 1:
            return tuple(knot.expand(len(t), *knot.shape[1:]) for knot in knots)
        u = (t.to(self.rotations) + 1) * 0.5 * (count - 1)  # [B] in knot units
        low = u.floor().clamp(0, count - 2).long()
        w = (u - low).clamp(0, 1)  # [B]
        return tuple(torch.lerp(knot[low], knot[low + 1], _leading(w, knot)) for knot in knots)

    def kinematics(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Forward kinematics at times `t` [B]: world rotations per joint (unit quats [B, J, 4]), each joint's
        displacement from its rest position [B, J, 3] and each bone's length factor s [B, J].

        Displacements are built up as D_j = (s_j R_j - I)(c_j - c_p) + D_p (D_root = T) rather than as
        positions, so they are exactly 0 at the rest pose.
        """
        residuals, translation, log_lengths = self.pose(t)
        local = unit_quats(residuals)  # [B, J, 4]
        matrices = quat_to_matrix(local)  # [B, J, 3, 3]
        factors = torch.exp(log_lengths)  # [B, J] exactly 1 where the log-length is 0
        eye = torch.eye(3, dtype=matrices.dtype, device=matrices.device)
        world_quats, world, moved = {}, {}, {}  # joint -> [B, 4], [B, 3, 3], [B, 3]
        for j in self.order:
            p = self.parents[j]
            if p < 0:
                world_quats[j], world[j], moved[j] = local[:, j], matrices[:, j], translation
                continue
            world_quats[j] = quat_multiply(world_quats[p], local[:, j])
            world[j] = world[p] @ matrices[:, j]
            scaled = world[j] * factors[:, j, None, None]
            moved[j] = (scaled - eye) @ (self.joints[j] - self.joints[p]) + moved[p]
        joints = range(len(self.parents))
        world_quats = torch.stack([world_quats[j] for j in joints], dim=1)
        return world_quats, torch.stack([moved[j] for j in joints], dim=1), factors

    def joints_at(self, t: torch.Tensor) -> torch.Tensor:
        """The posed joints [B, J, 3] at times `t` [B]."""
        return self.joints + self.kinematics(t)[1]

    def stretch_penalty(self, t: torch.Tensor) -> torch.Tensor | None:
        """Mean squared bone log-length change at times `t` [B]; None with fixed lengths."""
        if self.stretches is None:
            return None
        return self.pose(t)[2][:, self.bones].square().mean()

    def skinning_weights(self, points: torch.Tensor) -> torch.Tensor:
        """Weights [P, bones] (rows sum to 1) binding `points` [P, 3] to the bones' rest segments."""
        distances = segment_distances(points, self.joints[self.bone_parents], self.joints[self.bones])  # [P, bones]
        return torch.softmax(-distances.square() / (2 * torch.exp(2 * self.log_radii)), dim=-1)

    # ----- Deformation -------------------------------------------------------------------------

    def forward(
        self, means: torch.Tensor, quats: torch.Tensor, log_scales: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.residual is None:
            shifted = means.expand(len(t), *means.shape)
            turned, scaled = quats.expand(len(t), *quats.shape), log_scales.expand(len(t), *log_scales.shape)
        else:
            shifted, turned, scaled = self.residual(means, quats, log_scales, t)  # [B, N, ...]
        world_quats, moved, factors = self.kinematics(t)  # [B, J, 4], [B, J, 3], [B, J]
        bone_quats = world_quats[:, self.bones]  # [B, bones, 4]
        pivots = self.joints[self.bone_parents]  # [bones, 3] a bone turns about its parent joint...
        offsets = moved[:, self.bone_parents]  # [B, bones, 3] ...which has moved by this
        eye = torch.eye(3, dtype=means.dtype, device=means.device)
        turns = quat_to_matrix(bone_quats)  # [B, bones, 3, 3]
        if self.stretches is not None:  # R S, S = I + (s - 1) u u^T: longer along the bone, as thick across it
            along = torch.einsum("bkij,kj->bki", turns, self.directions)  # [B, bones, 3] R u
            stretch = (factors[:, self.bones] - 1)[..., None, None]  # [B, bones, 1, 1]
            turns = turns + stretch * along[..., :, None] * self.directions[:, None, :]
        linear = turns - eye  # [B, bones, 3, 3]
        weights = self.skinning_weights(means)  # [N, bones], bound at the canonical centres
        # x' = x + sum_b w_b ((R_b - I)(x - pivot_b) + offset_b), split so no [B, N, bones, 3, 3] is formed.
        blended = torch.einsum("nk,bkij->bnij", weights, linear)  # [B, N, 3, 3]
        shift = offsets - torch.einsum("bkij,kj->bki", linear, pivots)  # [B, bones, 3]
        new_means = shifted + torch.einsum("bnij,bnj->bni", blended, shifted)
        new_means = new_means + torch.einsum("nk,bki->bni", weights, shift)
        # q and -q are one rotation: the w >= 0 representative of each bone (the bones turn by under 180 degrees).
        bone_quats = torch.where(bone_quats[..., :1] < 0, -bone_quats, bone_quats)
        rotation = F.normalize(torch.einsum("nk,bkd->bnd", weights, bone_quats), dim=-1)  # [B, N, 4]
        return new_means, quat_multiply(rotation, turned), scaled

    def keypoints_at(self, points: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The posed joints [B, J, 3]: the lifted keypoints `points` [J, 3] are the rig's joints (KML's lift mode
        passes `joints`), so the keypoint loss reaches the pose directly."""
        if points.shape != self.joints.shape or not torch.equal(points, self.joints):
            raise ValueError("the skeleton's keypoints are its rig's joints: pass `joints` (the lifted support points)")
        return self.joints_at(t)

    def motion_points(self, means: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The deformed Gaussian centres [B, N, 3] (SCL on the Gaussians, as the paper's eq. 5)."""
        return self.deform_points(means, t)

    def rest_points(self, means: torch.Tensor) -> torch.Tensor:
        return means

    def param_groups(self, lr: float) -> list[dict]:
        """The pose at pose_lr_scale x `lr`, the skinning radii at `lr`, the residual's own groups."""
        groups = [
            {
                "params": [p for p in (self.rotations, self.translations, self.stretches) if p is not None],
                "lr": self.pose_lr_scale * lr,
                "name": "pose",
            },  # fmt: skip
            {"params": [self.log_radii], "lr": lr, "name": "skinning"},
        ]
        if self.residual is not None:
            groups += [{**group, "name": f"residual_{group['name']}"} for group in self.residual.param_groups(lr)]
        return groups

    def residual_offsets(self, means: torch.Tensor, t: torch.Tensor) -> torch.Tensor | None:
        """[B, N, 3] the residual field's displacement of `means` [N, 3] at times `t` [B] (None without one)."""
        if self.residual is None:
            return None
        return self.residual.motion_points(means, t) - means

    def spatial_planes(self) -> list[torch.Tensor]:
        return self._residual_field().spatial_planes()

    def time_planes(self) -> list[torch.Tensor]:
        return self._residual_field().time_planes()

    def _residual_field(self) -> HexPlaneDeformation:
        if self.residual is None:
            raise DynaPoseError("the skeleton field has no residual hexplane (residual: null) for a plane prior")
        return self.residual


def _leading(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`values` [K] shaped to scale `like` [K, ...] along its first axis."""
    return values.view(-1, *(1,) * (like.dim() - 1))
