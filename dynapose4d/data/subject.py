"""What the synthetic subjects share: the interface `build_sample` reads, rendering, and framing.

The subject is framed as real images are: at frame 0 it fills 80% of the reference view
(radius 2, fovy 49.1), centred, unless its whole motion would then leave an orbit view.
"""

import torch

from ..cameras import REFERENCE_RADIUS, Cameras, orbit_cameras, reference_camera
from ..keypoints import project_points
from ..render import rasterize

FILL = 0.8  # frame 0 fills 80% of the reference view, as a real image recentred with border_ratio=0.2
# Orbit views the whole motion must stay inside (2% from the edges): the training views' range, finer.
FRAMING_ELEVATIONS = torch.tensor([-30.0, -15.0, 0.0, 15.0, 30.0])
FRAMING_AZIMUTHS = torch.arange(0.0, 360.0, 10.0)
FRAMING_MARGIN = 0.02


class GaussianSubject:
    """A procedural subject: Gaussians and keypoints over a periodic motion of `num_frames` frames.

    What `build_sample` and `frame_subject` read: `kind`, `num_frames`, `joint_names`, `parents`
    (the keypoints' tree, parents first, the root 0), `joints_at`, `gaussians_at`, `image_boxes`
    and `transform`.
    """

    kind: str
    num_frames: int
    has_joints: bool = True  # its keypoints are joints and `parents` its bones (False: points on a smooth body)

    def gaussians_at(self, frame: float) -> dict[str, torch.Tensor]:
        raise NotImplementedError

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


def frame_subject(subject: GaussianSubject, fill: float = FILL, passes: int = 4) -> None:
    """Frame the subject as real inputs are framed: at frame 0 its box fills `fill` of the reference view, centred.

    Perspective makes the box depend on the scale, so a few passes of scale-then-recentre
    converge (to within a pixel in two). The whole motion must still stay inside every orbit
    view the sample renders: where it would not, the subject is scaled down until it does.
    """
    camera = reference_camera(1, 1)  # image coordinates in [0, 1]
    focal = float(camera.Ks[0, 0, 0])
    for _ in range(passes):
        low, high = subject.image_boxes(camera, [0])
        subject.transform(fill / float((high - low).max()), torch.zeros(3))
        low, high = subject.image_boxes(camera, [0])
        offset = (low + high)[0] / 2 - 0.5  # [2] image x right, y down
        subject.transform(1.0, torch.tensor([-offset[0], offset[1], 0.0]) * REFERENCE_RADIUS / focal)
    orbit = orbit_cameras(*torch.meshgrid(FRAMING_ELEVATIONS, FRAMING_AZIMUTHS, indexing="ij"), width=1, height=1)
    frames = [subject.num_frames * k / 16 for k in range(16)]
    for _ in range(passes):
        low, high = subject.image_boxes(orbit, frames)
        reach = float(torch.maximum(0.5 - low, high - 0.5).max())  # farthest from an image's centre
        if reach <= 0.5 - FRAMING_MARGIN:
            break
        subject.transform((0.5 - FRAMING_MARGIN) / reach, torch.zeros(3))


def sphere_image_boxes(
    centres: torch.Tensor, radii: torch.Tensor, cameras: Cameras
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per camera, the image box (x, y in [0, 1]) of spheres at `centres` [P, 3] of `radii` [P]: low, high [C, 2]."""
    pixels = project_points(centres, cameras.viewmats, cameras.Ks)  # [C, P, 2]
    depth = centres @ cameras.viewmats[:, 2, :3].T + cameras.viewmats[:, 2, 3]  # [P, C] camera z
    reach = (radii[:, None] * cameras.Ks[:, 0, 0] / depth).T[..., None]  # [C, P, 1] sphere radii, image units
    return (pixels - reach).amin(1), (pixels + reach).amax(1)


def normal_to_quat(normals: torch.Tensor) -> torch.Tensor:
    """Shortest-arc rotations [N, 4] taking +z to each unit normal [N, 3].

    The Gaussians' flat (third) axis then lies along the capsule normal.
    """
    w = 1.0 + normals[:, 2]
    q = torch.stack([w, -normals[:, 1], normals[:, 0], torch.zeros_like(w)], dim=-1)
    # A normal of exactly -z has no shortest arc; any half turn about a horizontal axis works.
    q[w < 1e-6] = torch.tensor([0.0, 1.0, 0.0, 0.0])
    return torch.nn.functional.normalize(q, dim=-1)


def uniform(generator: torch.Generator, shape, low: float, high: float) -> torch.Tensor:
    """Uniform samples of `shape` in [low, high) from `generator`."""
    return low + (high - low) * torch.rand(shape, generator=generator)


def hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """HSV in [0, 1] to RGB [..., 3]."""
    k = (torch.tensor([5.0, 3.0, 1.0]) + 6.0 * h[..., None]) % 6.0
    return v[..., None] - v[..., None] * s[..., None] * (torch.minimum(k, 4.0 - k).clamp(0.0, 1.0))
