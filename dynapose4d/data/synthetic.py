"""A procedural articulated subject: one producer of ground-truth samples (data/sample.py).

`make_subject` builds a 14-joint skeleton (`skeleton.py`), wraps each bone in a capsule of
textured Gaussians rigidly skinned to it, and animates it with periodic per-bone
rotations over `num_frames` frames. `build_sample` renders it into the sample format (input
image, driving video, keypoints, held-out and training views); the stages only ever see that
sample, as they would see one rendered from any other asset. `kind="blob"` is the subject with
no skeleton (blob.py); both are framed as real images are (subject.py).
"""

import math
from pathlib import Path

import torch

from ..cameras import Cameras
from ..geometry import axis_angle_quat, quat_multiply, quat_to_matrix
from ..keypoints import project_points
from . import blob
from .sample import ReferenceView, Sample, SampleKeypoints, cameras_from_views, orbit_view, save_sample
from .skeleton import DEFAULT_MOTIONS, JOINT_COUNT, MOTIONS, SKELETONS, yaw_matrix
from .subject import GaussianSubject, frame_subject, hsv_to_rgb, normal_to_quat, sphere_image_boxes, uniform

__all__ = ["JOINT_COUNT", "KINDS", "SyntheticSubject", "make_subject", "build_sample", "write_synthetic_sample"]

KINDS = (*SKELETONS, blob.KIND)  # the articulated kinds and the blob

DEFAULT_EVAL_AZIMUTHS = (45.0, 135.0, 225.0, 315.0)
# The oracle's training views: 90 cameras over the static stage's sampling range (elevation +-30,
# every azimuth), 5 degrees or more from every held-out view.
TRAINING_ELEVATIONS = (-30.0, -15.0, 0.0, 15.0, 30.0)
TRAINING_AZIMUTHS = tuple(float(a) for a in range(0, 360, 20))
STRIPE_PERIOD = 0.1  # world units along a bone: a few stripes per limb, 7 pixels apart at 128 px


# --- the subject --------------------------------------------------------------------


class SyntheticSubject(GaussianSubject):
    """An articulated Gaussian subject and its periodic motion.

    Joint j > 0 ends the bone from `parents[j]` to j; its world transform A_j (rotation
    `R_j`, translation `t_j`) moves that bone's Gaussians and all of its descendants.
    Motion is a function of the phase 2*pi*frame/num_frames, so fractional frames
    interpolate motion parameters and frame `num_frames` equals frame 0.
    """

    def __init__(self, kind, num_frames, joint_names, parents, rest, radii, motion, gaussians):
        self.kind: str = kind
        self.num_frames: int = num_frames
        self.joint_names: list[str] = list(joint_names)
        self.parents: list[int] = list(parents)
        self.rest_joints = rest  # [J, 3] world-space rest pose
        self.radii = radii  # [J] capsule radius of the bone ending at each joint
        self.motion = motion  # dict of oscillator / bounce tensors, see `_motion_tensors`
        self.rest_gaussians = gaussians  # activated params at rest + "bones" [N] long

    def bone_transforms(self, frame: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """World transforms of every bone: quats [J, 4], rotations [J, 3, 3], translations [J, 3]."""
        phase = 2.0 * math.pi * float(frame) / self.num_frames
        local = _local_rotations(self.motion, phase, len(self.parents))  # [J, 4]
        local_matrices = quat_to_matrix(local)  # [J, 3, 3]
        bounce = self.motion["bounce_axis"] * _oscillate(self.motion, "bounce", phase)[:, None]
        rest = self.rest_joints
        quats, rotations, translations = [local[0]], [local_matrices[0]], []
        # The root turns about its rest position, then translates.
        translations.append(rest[0] - local_matrices[0] @ rest[0] + bounce.sum(0))
        for j in range(1, len(self.parents)):
            p = self.parents[j]
            # A_j(x) = A_p(rest_p + R_local (x - rest_p)): bone j turns about its parent joint.
            quats.append(quat_multiply(quats[p], local[j]))
            rotations.append(rotations[p] @ local_matrices[j])
            translations.append(rotations[p] @ (rest[p] - local_matrices[j] @ rest[p]) + translations[p])
        return torch.stack(quats), torch.stack(rotations), torch.stack(translations)

    def joints_at(self, frame: float) -> torch.Tensor:
        """World-space joint positions [J, 3] at a (possibly fractional) frame."""
        _, rotations, translations = self.bone_transforms(frame)
        return (rotations @ self.rest_joints[:, :, None])[..., 0] + translations

    def gaussians_at(self, frame: float) -> dict[str, torch.Tensor]:
        """Activated Gaussian parameters at a frame: means, quats (wxyz), scales, opacities, colors."""
        quats, rotations, translations = self.bone_transforms(frame)
        rest, bones = self.rest_gaussians, self.rest_gaussians["bones"]
        means = (rotations[bones] @ rest["means"][:, :, None])[..., 0] + translations[bones]  # [N, 3]
        return {
            "means": means,
            "quats": torch.nn.functional.normalize(quat_multiply(quats[bones], rest["quats"]), dim=-1),
            "scales": rest["scales"],
            "opacities": rest["opacities"],
            "colors": rest["colors"],
        }

    def image_boxes(self, cameras: Cameras, frames) -> tuple[torch.Tensor, torch.Tensor]:
        """Per camera, the image box (x, y in [0, 1]) of the capsules' end spheres over `frames`: low [C, 2],
        high [C, 2]. A capsule is the convex hull of its end spheres, so its image lies within theirs."""
        joints = torch.cat([self.joints_at(frame) for frame in frames])  # [F * J, 3]
        return sphere_image_boxes(joints, self.radii.repeat(len(frames)), cameras)

    def transform(self, scale: float, shift: torch.Tensor) -> None:
        """Scale the subject about the origin, then move it by `shift` [3].

        Forward kinematics commutes with scaling and translating the rest pose (and scaling the
        root's bounce), so the whole motion is transformed exactly.
        """
        self.rest_joints = self.rest_joints * scale + shift
        self.radii = self.radii * scale
        self.motion["bounce_amplitude"] = self.motion["bounce_amplitude"] * scale


def _oscillate(motion: dict, prefix: str, phase: float) -> torch.Tensor:
    """offset + amplitude * sin(harmonic * phase + shift) for every oscillator of a group, [K]."""
    angle = motion[f"{prefix}_harmonic"] * phase + motion[f"{prefix}_shift"]
    return motion[f"{prefix}_offset"] + motion[f"{prefix}_amplitude"] * torch.sin(angle)


def _local_rotations(motion: dict, phase: float, num_joints: int) -> torch.Tensor:
    """Per-joint local rotations [J, 4]: the joint's oscillators composed in listed order."""
    quats = torch.zeros(num_joints, 4)
    quats[:, 0] = 1.0
    steps = axis_angle_quat(motion["rot_axis"], _oscillate(motion, "rot", phase))  # [K, 4]
    for joint, step in zip(motion["rot_joint"].tolist(), steps, strict=True):
        quats[joint] = quat_multiply(quats[joint], step)
    return quats


def make_subject(
    kind: str = "quadruped", num_frames: int = 16, seed: int = 0, num_gaussians: int = 4000, motion: str | None = None
) -> GaussianSubject:
    """Build a seeded subject; the seed jitters bone lengths, thickness, colours, amplitude and phase."""
    if kind not in KINDS:
        raise ValueError(f"synthetic kind must be one of {sorted(KINDS)}, got {kind!r}")
    if kind == blob.KIND and motion in (None, blob.MOTION):
        return blob.make_blob(num_frames, seed, num_gaussians, JOINT_COUNT)
    motion = motion or DEFAULT_MOTIONS.get(kind)
    if (kind, motion) not in MOTIONS:
        choices = [blob.MOTION] if kind == blob.KIND else sorted(name for k, name in MOTIONS if k == kind)
        raise ValueError(f"motion {motion!r} is not defined for {kind!r}; choose one of {choices}")
    if num_frames < 1 or num_gaussians < JOINT_COUNT:
        raise ValueError(f"need num_frames >= 1 and num_gaussians >= {JOINT_COUNT}")
    spec = SKELETONS[kind]
    generator = torch.Generator().manual_seed(seed)
    yaw = yaw_matrix(spec.yaw)  # [3, 3]
    rest = _jitter_proportions(torch.tensor(spec.rest), spec.parents, generator) @ yaw.T  # [J, 3]
    radii = torch.tensor(spec.radii) * uniform(generator, (len(spec.radii),), 0.9, 1.1)  # [J]
    tensors = _motion_tensors(*MOTIONS[(kind, motion)](), spec.joint_names, yaw, generator)
    subject = SyntheticSubject(kind, num_frames, spec.joint_names, spec.parents, rest, radii, tensors, None)
    subject.transform(1.0 / _envelope(subject)[1], -_envelope(subject)[0])  # a unit sphere about the origin
    frame_subject(subject)
    subject.rest_gaussians = _sample_gaussians(
        subject.rest_joints, subject.parents, subject.radii, num_gaussians, generator
    )
    return subject


def _jitter_proportions(rest: torch.Tensor, parents, generator) -> torch.Tensor:
    """Scale every bone's rest offset by 0.9..1.1, parents first so children follow."""
    factors = uniform(generator, (len(parents),), 0.9, 1.1)
    jittered = rest.clone()
    for j in range(1, len(parents)):
        p = parents[j]
        jittered[j] = jittered[p] + (rest[j] - rest[p]) * factors[j]
    return jittered


def _motion_tensors(rotations, bounces, joint_names, yaw, generator) -> dict[str, torch.Tensor]:
    """Oscillators as tensors in world axes, with seeded amplitude (x0.85..1.15) and phase jitter."""
    index = {name: j for j, name in enumerate(joint_names)}
    global_shift = uniform(generator, (), -0.3, 0.3)  # a seed starts the cycle at a different pose

    def group(items, prefix, vector_key, unit):
        count = len(items)
        vectors = torch.nn.functional.normalize(torch.tensor([getattr(o, vector_key) for o in items]), dim=-1)
        amplitude_jitter = uniform(generator, (count,), 0.85, 1.15)
        shift_jitter = global_shift + uniform(generator, (count,), -0.15, 0.15)
        return {
            f"{prefix}_axis": vectors @ yaw.T,  # [K, 3]
            f"{prefix}_amplitude": torch.tensor([o.amplitude for o in items]) * unit * amplitude_jitter,
            f"{prefix}_offset": torch.tensor([getattr(o, "offset", 0.0) for o in items]) * unit,
            f"{prefix}_harmonic": torch.tensor([float(o.harmonic) for o in items]),
            f"{prefix}_shift": torch.tensor([o.shift for o in items]) + shift_jitter,
        }

    tensors = group(rotations, "rot", "axis", math.pi / 180) | group(bounces, "bounce", "direction", 1.0)
    tensors["rot_joint"] = torch.tensor([index[o.joint] for o in rotations])
    return tensors


def _envelope(subject: SyntheticSubject, samples: int = 32) -> tuple[torch.Tensor, float]:
    """Centre [3] and radius of a sphere holding the capsules over the whole motion (exact for that centre).

    A capsule is the convex hull of its two end spheres, so its farthest point lies on one of them.
    """
    joints = torch.stack([subject.joints_at(subject.num_frames * k / samples) for k in range(samples)])
    centre = 0.5 * (joints.amax(dim=(0, 1)) + joints.amin(dim=(0, 1)))  # [3]
    parents = torch.tensor(subject.parents[1:])
    ends = torch.cat([joints[:, 1:], joints[:, parents]], dim=1) - centre  # [S, 2(J-1), 3]
    radii = subject.radii[1:].repeat(2)
    return centre, float((ends.norm(dim=-1) + radii).max())


def _sample_gaussians(rest, parents, radii, count, generator) -> dict[str, torch.Tensor]:
    """Gaussians on the capsule surfaces, allotted to bones by area, textured, at rest."""
    starts, ends = rest[parents[1:]], rest[1:]  # [B, 3] bones 1..J-1
    lengths, r = (ends - starts).norm(dim=-1), radii[1:]  # [B]
    areas = 2 * math.pi * r * lengths + 4 * math.pi * r**2  # [B]
    per_bone = torch.floor(areas / areas.sum() * (count - len(areas))).long() + 1  # every bone gets one
    per_bone[torch.argmax(areas)] += count - per_bone.sum()
    bone = torch.repeat_interleave(torch.arange(len(areas)), per_bone)  # [N] in 0..B-1

    axis = (ends - starts) / lengths[:, None]  # [B, 3]
    helper = torch.where((axis[:, :1].abs() < 0.9), torch.tensor([1.0, 0, 0]), torch.tensor([0, 0, 1.0]))
    e1 = torch.nn.functional.normalize(torch.linalg.cross(axis, helper), dim=-1)  # [B, 3]
    e2 = torch.linalg.cross(axis, e1)

    # Cylinder side with probability side_area / area, spherical end caps otherwise.
    on_side = torch.rand(count, generator=generator) < (2 * math.pi * r * lengths / areas)[bone]
    theta = 2 * math.pi * torch.rand(count, generator=generator)
    side_normal = torch.cos(theta)[:, None] * e1[bone] + torch.sin(theta)[:, None] * e2[bone]
    cap_normal = torch.nn.functional.normalize(torch.randn(count, 3, generator=generator), dim=-1)
    normals = torch.where(on_side[:, None], side_normal, cap_normal)  # [N, 3]
    along = torch.where(
        on_side,
        torch.rand(count, generator=generator) * lengths[bone],
        (cap_normal * axis[bone]).sum(-1).gt(0).float() * lengths[bone],  # the cap's centre
    )  # [N]
    depth = uniform(generator, (count,), 0.88, 1.0)  # a thin shell, not a single surface
    means = starts[bone] + along[:, None] * axis[bone] + (r[bone] * depth)[:, None] * normals

    spacing = math.sqrt(float(areas.sum()) / count)
    tangent = 0.6 * spacing * uniform(generator, (count,), 0.8, 1.2)
    return {
        "means": means,
        "quats": normal_to_quat(normals),
        "scales": torch.stack([tangent, tangent, 0.35 * tangent], dim=-1),  # flat along the normal
        "opacities": uniform(generator, (count,), 0.85, 0.95),
        "colors": _texture(means, starts, axis, e1, e2, bone, generator),
        "bones": bone + 1,  # bone b ends at joint b + 1
    }


def _texture(means, starts, axis, e1, e2, bone, generator) -> torch.Tensor:
    """Per-bone base colour times a checker of stripes along and around the bone, [N, 3] in [0, 1]."""
    num_bones = len(starts)
    hue = (torch.rand((), generator=generator) + 0.618034 * torch.arange(num_bones)) % 1.0  # well-spread hues
    base = hsv_to_rgb(
        hue, uniform(generator, (num_bones,), 0.45, 0.75), uniform(generator, (num_bones,), 0.7, 0.95)
    )  # [B, 3]
    offset = means - starts[bone]  # [N, 3]
    along = (offset * axis[bone]).sum(-1)
    around = torch.atan2((offset * e2[bone]).sum(-1), (offset * e1[bone]).sum(-1))
    checker = torch.sin(2 * math.pi * along / STRIPE_PERIOD) * torch.sin(3 * around)
    pattern = 0.5 + 0.5 * torch.tanh(4.0 * checker)  # soft edges keep the gradients finite
    return (base[bone] * (0.4 + 0.6 * pattern[:, None])).clamp(0.0, 1.0)


# --- the subject as a ground-truth sample -------------------------------------------


def build_sample(
    subject: GaussianSubject,
    resolution: int = 256,
    eval_azimuths=DEFAULT_EVAL_AZIMUTHS,
    eval_elevation: float = 0.0,
    training_views_every_frame: bool = False,
    name: str | None = None,
) -> Sample:
    """Render the subject into the ground-truth sample format (data/sample.py).

    The reference view and the held-out views at every frame, the training views on their
    grid (`TRAINING_ELEVATIONS` x `TRAINING_AZIMUTHS`, none at a held-out camera) at frame 0
    or at every frame, and the joints as keypoints: projected into the reference view, and in 3D.
    """
    if any(float(a) % 360.0 == 0.0 for a in eval_azimuths):
        raise ValueError("held-out azimuths must differ from the reference view's 0")
    eval_views = [orbit_view(eval_elevation, azimuth) for azimuth in eval_azimuths]
    train_views = [orbit_view(e, a) for e in TRAINING_ELEVATIONS for a in TRAINING_AZIMUTHS]
    reference = ReferenceView()
    cameras = [
        cameras_from_views(views, reference, resolution, resolution)
        for views in ([{"elevation": 0.0, "azimuth": 0.0}], eval_views, train_views)
    ]
    frames = range(subject.num_frames)
    driving, evaluation, training = [], [], []
    for t in frames:
        driving.append(_render_rgba(subject, cameras[0], t)[0])
        evaluation.append(_render_rgba(subject, cameras[1], t))
        if t == 0 or training_views_every_frame:
            training.append(_render_rgba(subject, cameras[2], t))
    joints = torch.stack([subject.joints_at(t) for t in frames])  # [T, J, 3]
    pixels = project_points(joints.reshape(-1, 3), cameras[0].viewmats, cameras[0].Ks)[0]  # [T * J, 2]
    bones = [(parent, joint) for joint, parent in enumerate(subject.parents) if joint > 0]
    return Sample(
        image=driving[0],
        driving_video=torch.stack(driving),
        eval_views=eval_views,
        eval_renders=torch.stack(evaluation),
        train_views=train_views,
        train_renders=torch.stack(training),
        reference=reference,
        keypoints=SampleKeypoints(
            list(subject.joint_names), bones, pixels.reshape(subject.num_frames, -1, 2), joints, subject.has_joints
        ),
        name=name or subject.kind,
        kind=subject.kind,
    )


def _render_rgba(subject: GaussianSubject, cameras: Cameras, frame: int) -> torch.Tensor:
    """Straight-alpha RGBA renders [C, H, W, 4] of the subject at a frame, as a sample stores them."""
    premultiplied, alpha = subject.render(cameras, frame, background=(0.0, 0.0, 0.0))
    return torch.cat([unpremultiply(premultiplied, alpha), alpha], dim=-1).cpu()


def unpremultiply(premultiplied: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Straight-alpha colour [..., 3] of a render over black: RGBA files keep colour and coverage apart."""
    return torch.where(alpha > 0, premultiplied / alpha.clamp_min(1e-6), 0.0).clamp(0.0, 1.0)


def write_synthetic_sample(
    directory,
    kind: str,
    seed: int,
    *,
    num_frames: int = 16,
    num_gaussians: int = 4000,
    resolution: int = 128,
    training_views_every_frame: bool = False,
) -> Path:
    """Make one subject and write its sample to `directory` (scripts/make_synthetic_sample.py); returns it."""
    subject = make_subject(kind, num_frames=num_frames, seed=seed, num_gaussians=num_gaussians)
    sample = build_sample(
        subject, resolution, training_views_every_frame=training_views_every_frame, name=f"{kind}-{seed}"
    )
    save_sample(sample, directory)
    return Path(directory)
