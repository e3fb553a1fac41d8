"""Skeletons and parametric motions of the synthetic articulated subjects.

Every skeleton has exactly `JOINT_COUNT` joints, listed parents-first (parents[j] < j,
the root is joint 0 with parent -1). Each non-root joint j ends one bone, the segment
from its parent's joint to joint j; a capsule of radius `radii[j]` around that bone
carries the Gaussians. A motion gives every bone a local rotation *about its parent
joint* (so the two legs hanging from the pelvis swing independently), expressed in
the rest frame, plus a root rotation about joint 0 and a root translation.

Subjects (world: +y up, OpenCV reference camera on +z looking at the origin):

- ``quadruped``: a dog-like body built along its own forward axis and then yawed by
  55 degrees, so the reference view sees it in three-quarter view: head to the image
  right and towards the camera, all four legs visible side by side, and every motion
  (leg swing along the body, tail wag across it) has both an image-plane and a depth
  component, so held-out views see something the reference view does not.
- ``biped``: a humanoid facing the camera (+z). The wave raises the left arm (image
  right, +x) and swings the forearm about a tilted axis, so the hand moves sideways
  in the image and towards/away from the camera; the chest twists about +y.
- ``bird``: wings spread across the body, turned 30 degrees from the camera; the flap sweeps
  the wings up and down (mostly image-plane motion, with depth at the tips) in two beats.
  Added as a held-out kind: no default was tuned on it.
"""

import math
from dataclasses import dataclass

import torch

JOINT_COUNT = 14


@dataclass(frozen=True)
class Oscillator:
    """One sinusoidal rotation of a bone: angle = offset + amplitude * sin(harmonic * phase + shift).

    Integer harmonics keep every motion periodic over the clip.
    """

    joint: str
    axis: tuple[float, float, float]  # rest-frame axis (the kind's local frame, before yaw)
    amplitude: float  # degrees
    offset: float = 0.0  # degrees
    harmonic: int = 1
    shift: float = 0.0  # radians


@dataclass(frozen=True)
class Bounce:
    """A sinusoidal root translation: direction * amplitude * sin(harmonic * phase + shift)."""

    direction: tuple[float, float, float]  # local frame, before yaw
    amplitude: float  # world units (before the subject is normalised to its sphere)
    harmonic: int = 1
    shift: float = 0.0


@dataclass(frozen=True)
class SkeletonSpec:
    """Rest pose of one kind in its local frame; `yaw` (degrees, about +y) turns it into the world."""

    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    rest: tuple[tuple[float, float, float], ...]  # [J, 3] joint positions
    radii: tuple[float, ...]  # [J] capsule radius of the bone ending at each joint (0 for the root)
    yaw: float = 0.0


# fmt: off
# Local frame of the quadruped: forward +x, up +y, its right side +z.
QUADRUPED = SkeletonSpec(
    joint_names=(
        "pelvis", "chest", "neck", "head", "tail_mid", "tail_tip",
        "front_left_knee", "front_left_paw", "front_right_knee", "front_right_paw",
        "back_left_knee", "back_left_paw", "back_right_knee", "back_right_paw",
    ),
    parents=(-1, 0, 1, 2, 0, 4, 1, 6, 1, 8, 0, 10, 0, 12),
    rest=(
        (-0.18, 0.06, 0.0), (0.16, 0.08, 0.0), (0.26, 0.24, 0.0), (0.40, 0.20, 0.0),
        (-0.31, 0.13, 0.0), (-0.42, 0.21, 0.0),
        (0.18, -0.13, -0.09), (0.17, -0.34, -0.09), (0.18, -0.13, 0.09), (0.17, -0.34, 0.09),
        (-0.20, -0.13, -0.09), (-0.19, -0.34, -0.09), (-0.20, -0.13, 0.09), (-0.19, -0.34, 0.09),
    ),
    radii=(0.0, 0.095, 0.045, 0.065, 0.03, 0.022, 0.036, 0.028, 0.036, 0.028, 0.038, 0.028, 0.038, 0.028),
    # Forward +x lands on (sin 55, 0, cos 55): three-quarter view, head towards the camera.
    yaw=55.0 - 90.0,
)

# Local frame of the biped is the world: it faces +z, so its left hand is at +x.
BIPED = SkeletonSpec(
    joint_names=(
        "pelvis", "chest", "neck", "head",
        "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow", "right_wrist",
        "left_knee", "left_ankle", "right_knee", "right_ankle",
    ),
    parents=(-1, 0, 1, 2, 1, 4, 5, 1, 7, 8, 0, 10, 0, 12),
    rest=(
        (0.0, 0.0, 0.0), (0.0, 0.2, 0.0), (0.0, 0.33, 0.0), (0.0, 0.39, 0.01),
        (0.12, 0.2, 0.0), (0.15, 0.02, 0.0), (0.16, -0.14, 0.01),
        (-0.12, 0.2, 0.0), (-0.15, 0.02, 0.0), (-0.16, -0.14, 0.01),
        (0.075, -0.22, 0.0), (0.075, -0.44, -0.01), (-0.075, -0.22, 0.0), (-0.075, -0.44, -0.01),
    ),
    radii=(0.0, 0.08, 0.035, 0.06, 0.045, 0.033, 0.027, 0.045, 0.033, 0.027, 0.046, 0.034, 0.046, 0.034),
)

# Local frame of the bird: forward +x, up +y, its right wing along +z (as the quadruped's right side).
BIRD = SkeletonSpec(
    joint_names=(
        "pelvis", "chest", "neck", "head", "beak", "tail",
        "left_shoulder", "left_elbow", "left_wrist", "left_tip",
        "right_shoulder", "right_elbow", "right_wrist", "right_tip",
    ),
    parents=(-1, 0, 1, 2, 3, 0, 1, 6, 7, 8, 1, 10, 11, 12),
    rest=(
        (-0.12, 0.0, 0.0), (0.08, 0.02, 0.0), (0.18, 0.10, 0.0), (0.24, 0.14, 0.0), (0.33, 0.12, 0.0),
        (-0.30, 0.03, 0.0),
        (0.06, 0.06, -0.07), (0.02, 0.08, -0.22), (0.0, 0.08, -0.36), (-0.06, 0.07, -0.50),
        (0.06, 0.06, 0.07), (0.02, 0.08, 0.22), (0.0, 0.08, 0.36), (-0.06, 0.07, 0.50),
    ),
    radii=(0.0, 0.08, 0.035, 0.05, 0.018, 0.03, 0.03, 0.03, 0.025, 0.018, 0.03, 0.03, 0.025, 0.018),
    # Forward +x lands on (sin 30, 0, cos 30): the head towards the camera, both wings in view.
    yaw=30.0 - 90.0,
)

# fmt: on

SKELETONS = {"quadruped": QUADRUPED, "biped": BIPED, "bird": BIRD}

X, Y, Z = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)


def _quadruped_walk() -> tuple[tuple[Oscillator, ...], tuple[Bounce, ...]]:
    """Trot: diagonal leg pairs in phase, tail wag across the body, head bob and turn."""
    legs = []
    for leg, shift in (("front_left", 0.0), ("back_right", 0.0), ("front_right", math.pi), ("back_left", math.pi)):
        # Rotation about the right axis (+z) swings the foot forward (+x).
        legs.append(Oscillator(f"{leg}_knee", Z, 28.0, shift=shift))
        # The lower leg folds back while the leg recovers forward.
        sign = -1.0 if leg.startswith("front") else 1.0
        legs.append(Oscillator(f"{leg}_paw", Z, sign * 15.0, sign * 15.0, shift=shift + math.pi / 2))
    rotations = (
        *legs,
        Oscillator("tail_mid", Y, 30.0, harmonic=2),
        Oscillator("tail_tip", Y, 35.0, harmonic=2, shift=-0.9),
        Oscillator("neck", Z, 8.0, harmonic=2),
        Oscillator("head", Z, 14.0, harmonic=2, shift=0.6),
        Oscillator("head", Y, 20.0),
        Oscillator("pelvis", X, 4.0),
    )
    return rotations, (Bounce(Y, 0.015, harmonic=2),)


def _biped_wave() -> tuple[tuple[Oscillator, ...], tuple[Bounce, ...]]:
    """Left arm raised and waving, chest twist, head tilt, slight body sway."""
    tilted = (0.0, -math.sqrt(0.5), math.sqrt(0.5))  # forearm axis: the hand also moves in depth
    rotations = (
        Oscillator("left_elbow", Z, 12.0, 120.0),
        Oscillator("left_wrist", tilted, 35.0, 30.0, harmonic=2),
        Oscillator("right_elbow", X, 15.0, shift=math.pi / 3),
        Oscillator("right_wrist", X, 12.0, -12.0, shift=math.pi / 3),
        Oscillator("chest", Y, 14.0),
        Oscillator("head", Z, 10.0, shift=0.5),
        Oscillator("pelvis", Z, 4.0),
    )
    return rotations, (Bounce(X, 0.02),)


def _biped_walk() -> tuple[tuple[Oscillator, ...], tuple[Bounce, ...]]:
    """Walk in place: legs swing front-back in opposite phases, arms swing against them.

    Seen from the reference view this is mostly depth motion (foreshortening).
    """
    rotations = []
    for side, shift in (("left", 0.0), ("right", math.pi)):
        # A negative rotation about +x swings the foot forward (+z).
        rotations.append(Oscillator(f"{side}_knee", X, 25.0, shift=shift))
        rotations.append(Oscillator(f"{side}_ankle", X, 15.0, 15.0, shift=shift + math.pi / 2))
        rotations.append(Oscillator(f"{side}_elbow", X, -20.0, shift=shift))
    rotations += [Oscillator("chest", Y, 6.0), Oscillator("pelvis", Y, -4.0)]
    return tuple(rotations), (Bounce(Y, 0.012, harmonic=2),)


def _bird_flap() -> tuple[tuple[Oscillator, ...], tuple[Bounce, ...]]:
    """Two wingbeats per clip: the wings sweep up and down about the body's axis, the outer joints lagging
    (a travelling wave along the wing), the body bobbing against them, the tail and head pitching."""
    rotations = []
    for side, sign in (("left", 1.0), ("right", -1.0)):  # about +x, positive lifts the left wing (-z)
        rotations.append(Oscillator(f"{side}_shoulder", X, sign * 40.0, sign * 10.0, harmonic=2))
        rotations.append(Oscillator(f"{side}_elbow", X, sign * 20.0, harmonic=2, shift=-0.6))
        rotations.append(Oscillator(f"{side}_wrist", X, sign * 18.0, harmonic=2, shift=-1.2))
        rotations.append(Oscillator(f"{side}_tip", Y, 12.0, harmonic=2, shift=-1.5))  # the tip sweeps back
    rotations += [
        Oscillator("tail", Z, 15.0, harmonic=2, shift=math.pi),
        Oscillator("head", Y, 25.0),
        Oscillator("neck", Z, 8.0, harmonic=2, shift=math.pi / 2),
    ]
    return tuple(rotations), (Bounce(Y, 0.03, harmonic=2, shift=math.pi),)


MOTIONS = {
    ("quadruped", "walk"): _quadruped_walk,
    ("biped", "wave"): _biped_wave,
    ("biped", "walk"): _biped_walk,
    ("bird", "flap"): _bird_flap,
}
DEFAULT_MOTIONS = {"quadruped": "walk", "biped": "wave", "bird": "flap"}


def yaw_matrix(degrees: float) -> torch.Tensor:
    """Rotation [3, 3] about +y; positive turns +x towards -z."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
