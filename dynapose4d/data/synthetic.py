"""A procedural articulated subject: the ground truth that a real run lacks.

`make_subject` builds a 14-joint skeleton (`skeleton.py`), wraps each bone in a capsule of
textured Gaussians rigidly skinned to it, and animates it with periodic per-bone
rotations over `num_frames` frames. `build_sample` renders what a run consumes (input
image, driving video, keypoints) and what it is scored against (held-out views at every
frame); `save_sample`/`load_sample` keep it on disk as PNGs plus one JSON.

The subject is normalised to fit a sphere of radius `SUBJECT_RADIUS` around the origin
over its whole motion, so it spans about half of the reference view (radius 2, fovy 49.1).
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..cameras import REFERENCE_FOVY, REFERENCE_RADIUS, Cameras, orbit_cameras, reference_camera
from ..export import load_png, save_png
from ..geometry import axis_angle_quat, quat_multiply, quat_to_matrix
from ..keypoints import project_points
from ..render import rasterize
from .skeleton import DEFAULT_MOTIONS, JOINT_COUNT, MOTIONS, SKELETONS, yaw_matrix

__all__ = [
    "JOINT_COUNT",
    "SyntheticSubject",
    "SyntheticSample",
    "make_subject",
    "build_sample",
    "save_sample",
    "load_sample",
]

SUBJECT_RADIUS = 0.48
DEFAULT_EVAL_AZIMUTHS = (45.0, 135.0, 225.0, 315.0)
STRIPE_PERIOD = 0.06  # world units along a bone: a few stripes per limb at 256 px


# --- rotations (quaternions wxyz) -------------------------------------------------


def normal_to_quat(normals: torch.Tensor) -> torch.Tensor:
    """Shortest-arc rotations [N, 4] taking +z to each unit normal [N, 3].

    The Gaussians' flat (third) axis then lies along the capsule normal.
    """
    w = 1.0 + normals[:, 2]
    q = torch.stack([w, -normals[:, 1], normals[:, 0], torch.zeros_like(w)], dim=-1)
    # A normal of exactly -z has no shortest arc; any half turn about a horizontal axis works.
    q[w < 1e-6] = torch.tensor([0.0, 1.0, 0.0, 0.0])
    return torch.nn.functional.normalize(q, dim=-1)


# --- the subject --------------------------------------------------------------------


class SyntheticSubject:
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

    def render(self, cameras: Cameras, frame: float, background=(1.0, 1.0, 1.0), backend: str = "auto"):
        """Render all cameras at a frame: rgb [C, H, W, 3] composited on `background`, alpha [C, H, W, 1]."""
        device = cameras.viewmats.device
        params = {name: value.to(device) for name, value in self.gaussians_at(frame).items()}
        backgrounds = torch.tensor(background, dtype=torch.float32, device=device).expand(len(cameras), 3)
        rgb, alpha, _ = rasterize(
            **params, viewmats=cameras.viewmats, Ks=cameras.Ks, width=cameras.width, height=cameras.height,
            backgrounds=backgrounds, backend=backend,
        )  # fmt: skip
        return rgb.clamp(0.0, 1.0), alpha


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
) -> SyntheticSubject:
    """Build a seeded subject; the seed jitters bone lengths, thickness, colours, amplitude and phase."""
    if kind not in SKELETONS:
        raise ValueError(f"synthetic kind must be one of {sorted(SKELETONS)}, got {kind!r}")
    motion = motion or DEFAULT_MOTIONS[kind]
    if (kind, motion) not in MOTIONS:
        choices = sorted(name for k, name in MOTIONS if k == kind)
        raise ValueError(f"motion {motion!r} is not defined for {kind!r}; choose one of {choices}")
    if num_frames < 1 or num_gaussians < JOINT_COUNT:
        raise ValueError(f"need num_frames >= 1 and num_gaussians >= {JOINT_COUNT}")
    spec = SKELETONS[kind]
    generator = torch.Generator().manual_seed(seed)
    yaw = yaw_matrix(spec.yaw)  # [3, 3]
    rest = _jitter_proportions(torch.tensor(spec.rest), spec.parents, generator) @ yaw.T  # [J, 3]
    radii = torch.tensor(spec.radii) * _uniform(generator, (len(spec.radii),), 0.9, 1.1)  # [J]
    tensors = _motion_tensors(*MOTIONS[(kind, motion)](), spec.joint_names, yaw, generator)
    subject = SyntheticSubject(kind, num_frames, spec.joint_names, spec.parents, rest, radii, tensors, None)
    _normalise(subject)
    subject.rest_gaussians = _sample_gaussians(
        subject.rest_joints, subject.parents, subject.radii, num_gaussians, generator
    )
    return subject


def _uniform(generator: torch.Generator, shape, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator)


def _jitter_proportions(rest: torch.Tensor, parents, generator) -> torch.Tensor:
    """Scale every bone's rest offset by 0.9..1.1, parents first so children follow."""
    factors = _uniform(generator, (len(parents),), 0.9, 1.1)
    jittered = rest.clone()
    for j in range(1, len(parents)):
        p = parents[j]
        jittered[j] = jittered[p] + (rest[j] - rest[p]) * factors[j]
    return jittered


def _motion_tensors(rotations, bounces, joint_names, yaw, generator) -> dict[str, torch.Tensor]:
    """Oscillators as tensors in world axes, with seeded amplitude (x0.85..1.15) and phase jitter."""
    index = {name: j for j, name in enumerate(joint_names)}
    global_shift = _uniform(generator, (), -0.3, 0.3)  # a seed starts the cycle at a different pose

    def group(items, prefix, vector_key, unit):
        count = len(items)
        vectors = torch.nn.functional.normalize(torch.tensor([getattr(o, vector_key) for o in items]), dim=-1)
        amplitude_jitter = _uniform(generator, (count,), 0.85, 1.15)
        shift_jitter = global_shift + _uniform(generator, (count,), -0.15, 0.15)
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


def _normalise(subject: SyntheticSubject, samples: int = 32) -> None:
    """Centre the subject's motion envelope on the origin and scale it to `SUBJECT_RADIUS`.

    Forward kinematics commutes with translating and scaling the rest pose (and the root
    translation), so one pass over the cycle gives the exact envelope of the capsules.
    """
    joints = torch.stack([subject.joints_at(subject.num_frames * k / samples) for k in range(samples)])
    centre = 0.5 * (joints.amax(dim=(0, 1)) + joints.amin(dim=(0, 1)))  # [3]
    parents = torch.tensor(subject.parents[1:])
    # A capsule is the convex hull of its two end spheres: its farthest point lies on one of them.
    ends = torch.cat([joints[:, 1:], joints[:, parents]], dim=1) - centre  # [S, 2(J-1), 3]
    radii = subject.radii[1:].repeat(2)
    scale = SUBJECT_RADIUS / (ends.norm(dim=-1) + radii).max()
    subject.rest_joints = (subject.rest_joints - centre) * scale
    subject.radii = subject.radii * scale
    subject.motion["bounce_amplitude"] = subject.motion["bounce_amplitude"] * scale


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
    depth = _uniform(generator, (count,), 0.88, 1.0)  # a thin shell, not a single surface
    means = starts[bone] + along[:, None] * axis[bone] + (r[bone] * depth)[:, None] * normals

    spacing = math.sqrt(float(areas.sum()) / count)
    tangent = 0.6 * spacing * _uniform(generator, (count,), 0.8, 1.2)
    return {
        "means": means,
        "quats": normal_to_quat(normals),
        "scales": torch.stack([tangent, tangent, 0.35 * tangent], dim=-1),  # flat along the normal
        "opacities": _uniform(generator, (count,), 0.85, 0.95),
        "colors": _texture(means, starts, axis, e1, e2, bone, generator),
        "bones": bone + 1,  # bone b ends at joint b + 1
    }


def _texture(means, starts, axis, e1, e2, bone, generator) -> torch.Tensor:
    """Per-bone base colour times a checker of stripes along and around the bone, [N, 3] in [0, 1]."""
    num_bones = len(starts)
    hue = (torch.rand((), generator=generator) + 0.618034 * torch.arange(num_bones)) % 1.0  # well-spread hues
    base = _hsv_to_rgb(
        hue, _uniform(generator, (num_bones,), 0.45, 0.75), _uniform(generator, (num_bones,), 0.7, 0.95)
    )  # [B, 3]
    offset = means - starts[bone]  # [N, 3]
    along = (offset * axis[bone]).sum(-1)
    around = torch.atan2((offset * e2[bone]).sum(-1), (offset * e1[bone]).sum(-1))
    checker = torch.sin(2 * math.pi * along / STRIPE_PERIOD) * torch.sin(3 * around)
    pattern = 0.5 + 0.5 * torch.tanh(4.0 * checker)  # soft edges keep the gradients finite
    return (base[bone] * (0.4 + 0.6 * pattern[:, None])).clamp(0.0, 1.0)


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """HSV in [0, 1] to RGB [..., 3]."""
    k = (torch.tensor([5.0, 3.0, 1.0]) + 6.0 * h[..., None]) % 6.0
    return v[..., None] - v[..., None] * s[..., None] * (torch.minimum(k, 4.0 - k).clamp(0.0, 1.0))


# --- cameras, samples, files -------------------------------------------------------


@dataclass
class SyntheticSample:
    """Everything a run needs from a synthetic subject, as tensors.

    RGBA images hold straight (unpremultiplied) colour and the coverage alpha, like a
    cut-out input image. The reference view is `reference_camera`
    (elevation 0, azimuth 0); held-out views are orbit cameras at the same radius and fovy.
    """

    image: torch.Tensor  # [H, W, 4] reference view, frame 0
    driving_video: torch.Tensor  # [T, H, W, 4] reference view, every frame
    support_keypoints: torch.Tensor  # [14, 2] pixel coordinates of the joints at frame 0
    keypoints: torch.Tensor  # [T, 14, 2]
    joints3d: torch.Tensor  # [T, 14, 3] world space
    eval_elevations: torch.Tensor  # [V] degrees
    eval_azimuths: torch.Tensor  # [V] degrees
    eval_renders: torch.Tensor  # [T, V, H, W, 4]
    joint_names: list[str] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)

    def eval_cameras(self) -> Cameras:
        """The held-out cameras at the sample's resolution."""
        height, width = self.image.shape[:2]
        return orbit_cameras(self.eval_elevations, self.eval_azimuths, width=width, height=height)


def build_sample(
    subject: SyntheticSubject, resolution: int = 256, eval_azimuths=DEFAULT_EVAL_AZIMUTHS, eval_elevation: float = 0.0
) -> SyntheticSample:
    """Render the reference view and the held-out views at every frame, and project the joints."""
    if any(float(a) % 360.0 == 0.0 for a in eval_azimuths):
        raise ValueError("held-out azimuths must differ from the reference view's 0")
    azimuths = torch.tensor(eval_azimuths, dtype=torch.float32)  # [V]
    elevations = torch.full_like(azimuths, float(eval_elevation))
    reference = reference_camera(resolution, resolution)
    evaluation = orbit_cameras(elevations, azimuths, width=resolution, height=resolution)
    cameras = Cameras.concat(reference, evaluation)

    frames = []
    for t in range(subject.num_frames):
        premultiplied, alpha = subject.render(cameras, t, background=(0.0, 0.0, 0.0))
        frames.append(torch.cat([unpremultiply(premultiplied, alpha), alpha], dim=-1).cpu())  # [1 + V, H, W, 4]
    renders = torch.stack(frames)  # [T, 1 + V, H, W, 4]
    joints3d = torch.stack([subject.joints_at(t) for t in range(subject.num_frames)])  # [T, J, 3]
    keypoints = project_points(joints3d.reshape(-1, 3), reference.viewmats, reference.Ks)[0].reshape(
        subject.num_frames, -1, 2
    )
    return SyntheticSample(
        image=renders[0, 0],
        driving_video=renders[:, 0],
        support_keypoints=keypoints[0],
        keypoints=keypoints,
        joints3d=joints3d,
        eval_elevations=elevations,
        eval_azimuths=azimuths,
        eval_renders=renders[:, 1:],
        joint_names=list(subject.joint_names),
        parents=list(subject.parents),
    )


def unpremultiply(premultiplied: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Straight-alpha colour [..., 3] of a render over black: RGBA files keep colour and coverage apart."""
    return torch.where(alpha > 0, premultiplied / alpha.clamp_min(1e-6), 0.0).clamp(0.0, 1.0)


def _write_png(path: Path, rgba: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(path, rgba)


def save_sample(sample: SyntheticSample, directory) -> None:
    """Write image.png, driving/NNN.png, eval/VV/NNN.png (RGBA 8-bit) and sample.json."""
    directory = Path(directory)
    _write_png(directory / "image.png", sample.image)
    for t, frame in enumerate(sample.driving_video):
        _write_png(directory / "driving" / f"{t:03d}.png", frame)
    for v in range(len(sample.eval_azimuths)):
        for t, frame in enumerate(sample.eval_renders[:, v]):
            _write_png(directory / "eval" / f"{v:02d}" / f"{t:03d}.png", frame)
    meta = {
        "num_frames": len(sample.driving_video),
        "resolution": list(sample.image.shape[:2]),
        "camera": {"radius": REFERENCE_RADIUS, "fovy": REFERENCE_FOVY},
        "joint_names": sample.joint_names,
        "parents": sample.parents,
        "support_keypoints": sample.support_keypoints.tolist(),
        "keypoints": sample.keypoints.tolist(),
        "joints3d": sample.joints3d.tolist(),
        "eval_views": [
            {"dir": f"{v:02d}", "elevation": float(e), "azimuth": float(a)}
            for v, (e, a) in enumerate(zip(sample.eval_elevations, sample.eval_azimuths, strict=True))
        ],
    }
    (directory / "sample.json").write_text(json.dumps(meta, indent=1))


def load_sample(directory) -> SyntheticSample:
    """Read a sample written by `save_sample` (images come back 8-bit quantised)."""
    directory = Path(directory)
    meta = json.loads((directory / "sample.json").read_text())
    frames = range(meta["num_frames"])
    driving = torch.stack([load_png(directory / "driving" / f"{t:03d}.png") for t in frames])
    views = meta["eval_views"]
    renders = torch.stack(
        [torch.stack([load_png(directory / "eval" / view["dir"] / f"{t:03d}.png") for view in views]) for t in frames]
    )  # [T, V, H, W, 4]
    return SyntheticSample(
        image=load_png(directory / "image.png"),
        driving_video=driving,
        support_keypoints=torch.tensor(meta["support_keypoints"]),
        keypoints=torch.tensor(meta["keypoints"]),
        joints3d=torch.tensor(meta["joints3d"]),
        eval_elevations=torch.tensor([view["elevation"] for view in views]),
        eval_azimuths=torch.tensor([view["azimuth"] for view in views]),
        eval_renders=renders,
        joint_names=meta["joint_names"],
        parents=meta["parents"],
    )
