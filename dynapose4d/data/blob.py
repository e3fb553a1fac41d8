"""A wobbling blob: the synthetic subject with no skeleton to speak of.

The articulated kinds (skeleton.py) move rigid capsules about joints; this one deforms
smoothly everywhere, the honest case against a skeleton-driven field. An ellipsoidal body of
textured Gaussians is carried by one non-rigid field of the rest position x = (x, y, z):

    ripple   x, z scaled by 1 + a_r sin(k y - 2 phase)       a bulge travelling up the body
    squash   y scaled by s = 1 + a_s sin(phase), x and z by 1 / sqrt(s)   (volume kept)
    sway     x += a_x h(y) sin(phase + pi/3),  z += a_z h(y) sin(2 phase)    h = ((y + 1) / 2)^2

so the top sways sideways and in depth while the body squashes, and distances between material
points change over time (no bone keeps its length). Its keypoints are material points inside
the body (farthest points of the shrunken surface) moved by the same field, joined by their
minimum spanning tree, as the keypoints stage's automatic support points are. The Gaussians
turn with the surface: each one's normal is carried by the field's inverse transposed Jacobian.
Added as a held-out kind: no default was tuned on it.
"""

import math

import torch

from ..cameras import Cameras
from .subject import GaussianSubject, frame_subject, hsv_to_rgb, normal_to_quat, sphere_image_boxes, uniform
from .support import farthest_points, minimum_spanning_tree

KIND = "blob"
MOTION = "wobble"
AXES = (0.8, 1.0, 0.7)  # the body's semi-axes (x, y, z), before the seed's jitter and the framing
INNER = 0.6  # keypoints sit at this fraction of the way from the centre to the surface
# Amplitudes of ripple, squash, sideways and depth sway (unit-radius body), before the seed's jitter.
AMPLITUDES = (0.12, 0.22, 0.35, 0.25)
RIPPLE_WAVENUMBER = 2.5 * math.pi  # radians per unit of y: about one bulge on the body at a time
BANDS, SECTORS = 4, 6  # the texture: hue bands along y, a checker of sectors around it
JACOBIAN_STEP = 1e-3
FRAMING_POINTS = 1000  # Gaussians whose spheres stand for the silhouette when framing


class WobblingBlob(GaussianSubject):
    """A smooth non-rigid subject: rest Gaussians and keypoints in a unit body frame, the field above, and a
    world transform x_world = scale * field(x, phase) + shift that the framing sets."""

    kind = KIND
    has_joints = False  # material points joined by their spanning tree

    def __init__(self, num_frames: int, gaussians: dict, keypoints: torch.Tensor, parents: list[int], motion: dict):
        self.num_frames = num_frames
        self.rest_gaussians = gaussians  # body frame: means [N, 3], normals [N, 3], scales [N, 3], opacities, colors
        self.rest_keypoints = keypoints  # [J, 3] body frame
        self.parents = parents  # the keypoints' tree, parents first
        self.joint_names = [f"blob{index}" for index in range(len(keypoints))]
        self.motion = motion  # "amplitudes" [4] (ripple, squash, sway x, sway z) and the phase "shift"
        self.scale, self.shift = 1.0, torch.zeros(3)

    def field(self, points: torch.Tensor, frame: float) -> torch.Tensor:
        """Body-frame points [P, 3] carried to `frame` (still in the body frame)."""
        phase = 2.0 * math.pi * float(frame) / self.num_frames + self.motion["shift"]
        ripple, squash, sway_x, sway_z = self.motion["amplitudes"].tolist()
        x, y, z = points.unbind(-1)
        bulge = (1 + ripple * torch.sin(RIPPLE_WAVENUMBER * y - 2 * phase)) / math.sqrt(1 + squash * math.sin(phase))
        height = ((y + 1) / 2).square()
        return torch.stack(
            [
                x * bulge + sway_x * height * math.sin(phase + math.pi / 3),
                y * (1 + squash * math.sin(phase)),
                z * bulge + sway_z * height * math.sin(2 * phase),
            ],
            dim=-1,
        )

    def joints_at(self, frame: float) -> torch.Tensor:
        """World-space keypoints [J, 3] at a (possibly fractional) frame."""
        return self.scale * self.field(self.rest_keypoints, frame) + self.shift

    def gaussians_at(self, frame: float) -> dict[str, torch.Tensor]:
        """Activated Gaussian parameters at a frame: means, quats (wxyz), scales, opacities, colors."""
        rest = self.rest_gaussians
        jacobian = self._jacobian(rest["means"], frame)  # [N, 3, 3]
        normals = torch.linalg.solve(jacobian.transpose(1, 2), rest["normals"][..., None])[..., 0]  # J^-T n
        return {
            "means": self.scale * self.field(rest["means"], frame) + self.shift,
            "quats": normal_to_quat(torch.nn.functional.normalize(normals, dim=-1)),  # flat along the new normal
            "scales": self.scale * rest["scales"],
            "opacities": rest["opacities"],
            "colors": rest["colors"],
        }

    def image_boxes(self, cameras: Cameras, frames) -> tuple[torch.Tensor, torch.Tensor]:
        """Per camera, the image box of the body over `frames`: low [C, 2], high [C, 2] in [0, 1]."""
        rest = self.rest_gaussians
        every = max(1, len(rest["means"]) // FRAMING_POINTS)
        points = rest["means"][::every]
        centres = torch.cat([self.scale * self.field(points, frame) + self.shift for frame in frames])
        radii = 2 * self.scale * rest["scales"][::every].amax(dim=-1).repeat(len(frames))  # two sigma
        return sphere_image_boxes(centres, radii, cameras)

    def transform(self, scale: float, shift: torch.Tensor) -> None:
        """Scale the subject about the origin, then move it by `shift` [3]."""
        self.scale, self.shift = self.scale * scale, self.shift * scale + shift

    def _jacobian(self, points: torch.Tensor, frame: float) -> torch.Tensor:
        """d field / d x [P, 3, 3] by central differences (the field is smooth at this step's scale)."""
        columns = []
        for axis in range(3):
            step = torch.zeros(3)
            step[axis] = JACOBIAN_STEP
            columns.append((self.field(points + step, frame) - self.field(points - step, frame)) / (2 * JACOBIAN_STEP))
        return torch.stack(columns, dim=-1)


def make_blob(num_frames: int = 16, seed: int = 0, num_gaussians: int = 4000, count: int = 14) -> WobblingBlob:
    """A seeded blob with `count` keypoints; the seed jitters its axes, colours, amplitudes and phase."""
    generator = torch.Generator().manual_seed(seed)
    axes = torch.tensor(AXES) * uniform(generator, (3,), 0.9, 1.1)  # [3]
    directions = torch.nn.functional.normalize(torch.randn(num_gaussians, 3, generator=generator), dim=-1)
    normals = torch.nn.functional.normalize(directions / axes, dim=-1)  # the ellipsoid's normals there
    depth = uniform(generator, (num_gaussians,), 0.88, 1.0)[:, None]  # a thin shell, as the capsules'
    means = directions * axes * depth  # [N, 3]
    area = 4 * math.pi * float(axes.prod()) ** (2 / 3)  # the sphere of the same volume: close enough
    tangent = 0.6 * math.sqrt(area / num_gaussians) * uniform(generator, (num_gaussians,), 0.8, 1.2)
    gaussians = {
        "means": means,
        "normals": normals,
        "scales": torch.stack([tangent, tangent, 0.35 * tangent], dim=-1),
        "opacities": uniform(generator, (num_gaussians,), 0.85, 0.95),
        "colors": _texture(directions, generator),
    }
    inner = directions * axes * INNER  # [N, 3] the shrunken surface
    first = int((inner - inner.mean(dim=0)).norm(dim=-1).argmax())
    keypoints = inner[farthest_points(inner, count, first)]  # [J, 3]
    order, parents = _tree_order(keypoints)
    motion = {
        "amplitudes": torch.tensor(AMPLITUDES) * uniform(generator, (4,), 0.85, 1.15),
        "shift": float(uniform(generator, (), -0.3, 0.3)),
    }
    blob = WobblingBlob(num_frames, gaussians, keypoints[order], parents, motion)
    frame_subject(blob)
    return blob


def _tree_order(points: torch.Tensor) -> tuple[list[int], list[int]]:
    """The minimum spanning tree of `points` [J, 3] as (an order of the points, parents first; each one's parent
    in that order, -1 for the root)."""
    edges = minimum_spanning_tree(points)  # (parent, child), each child after its parent
    order = [0] + [child for _, child in edges]
    position = {point: index for index, point in enumerate(order)}
    parents = [-1] + [position[parent] for parent, _ in edges]
    return order, parents


def _texture(directions: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Hue bands along y times a soft checker of sectors around y, [N, 3] in [0, 1]: motion shows everywhere."""
    elevation = torch.asin(directions[:, 1].clamp(-1, 1))  # [N] in [-pi/2, pi/2]
    azimuth = torch.atan2(directions[:, 2], directions[:, 0])
    band = ((elevation / math.pi + 0.5) * BANDS).long().clamp(max=BANDS - 1)  # [N]
    hue = (torch.rand((), generator=generator) + 0.618034 * torch.arange(BANDS)) % 1.0
    base = hsv_to_rgb(hue, uniform(generator, (BANDS,), 0.45, 0.75), uniform(generator, (BANDS,), 0.7, 0.95))
    checker = torch.sin(SECTORS / 2 * azimuth) * torch.sin(2 * BANDS * elevation)
    pattern = 0.5 + 0.5 * torch.tanh(4.0 * checker)
    return (base[band] * (0.4 + 0.6 * pattern[:, None])).clamp(0.0, 1.0)
