"""The one camera convention of DynaPose4D.

World: right-handed, +y up; the object sits at the origin and faces +z.
Camera: OpenCV (x right, y down, z forward). `viewmats` are world-to-camera [.., 4, 4],
`Ks` pixel intrinsics [.., 3, 3] with pixel centres at +0.5 (gsplat's convention).

Orbit cameras are given by elevation (degrees, positive = camera above the object),
azimuth (degrees, 0 = the reference view on the +z axis, positive = camera moves
towards +x) and radius. The reference view is elevation 0, azimuth 0, radius 2,
fovy 49.1 degrees (Zero123's training setup).
"""

import math
from dataclasses import dataclass

import torch

REFERENCE_RADIUS = 2.0
REFERENCE_FOVY = 49.1


@dataclass
class Cameras:
    """A batch of C pinhole cameras sharing one image size."""

    viewmats: torch.Tensor  # [C, 4, 4] world-to-camera
    Ks: torch.Tensor  # [C, 3, 3]
    width: int
    height: int

    def __len__(self) -> int:
        return self.viewmats.shape[0]

    def to(self, device) -> "Cameras":
        return Cameras(self.viewmats.to(device), self.Ks.to(device), self.width, self.height)

    def __getitem__(self, index) -> "Cameras":
        """Select cameras with an int, slice or index tensor; keeps the batch dimension."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return Cameras(self.viewmats[index], self.Ks[index], self.width, self.height)

    @classmethod
    def concat(cls, *batches: "Cameras") -> "Cameras":
        """One batch of all cameras in `batches` (same image size)."""
        if len({(batch.width, batch.height) for batch in batches}) != 1:
            raise ValueError("cameras of different image sizes cannot share a batch")
        viewmats = torch.cat([batch.viewmats for batch in batches])
        Ks = torch.cat([batch.Ks for batch in batches])
        return cls(viewmats, Ks, batches[0].width, batches[0].height)

    @property
    def positions(self) -> torch.Tensor:
        """Camera centres in world space, [C, 3]."""
        return camera_positions(self.viewmats)

    def resized(self, width: int, height: int) -> "Cameras":
        """The same cameras rendering `width` x `height` images: intrinsics scaled per axis."""
        scale = torch.tensor([width / self.width, height / self.height, 1.0], dtype=self.Ks.dtype)
        return Cameras(self.viewmats, self.Ks * scale.to(self.Ks.device)[:, None], width, height)

    def orbit_angles(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each camera centre as elevation [C], azimuth [C] (degrees) and radius [C] about the origin."""
        x, y, z = self.positions.unbind(-1)
        radius = self.positions.norm(dim=-1)
        elevation = torch.rad2deg(torch.asin((y / radius).clamp(-1.0, 1.0)))
        return elevation, torch.rad2deg(torch.atan2(x, z)), radius


def camera_positions(viewmats: torch.Tensor) -> torch.Tensor:
    """World-space camera centres [C, 3] of world-to-camera matrices [C, 4, 4]."""
    rotation, translation = viewmats[:, :3, :3], viewmats[:, :3, 3:]
    return -(rotation.transpose(1, 2) @ translation)[..., 0]


def intrinsics_from_fovy(fovy_deg: float, width: int, height: int) -> torch.Tensor:
    """Pixel intrinsics [3, 3] for a vertical field of view; square pixels, centred."""
    focal = 0.5 * height / math.tan(math.radians(fovy_deg) / 2)
    return torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]], dtype=torch.float32)


def orbit_position(elevation_deg, azimuth_deg, radius) -> torch.Tensor:
    """World-space camera centre(s) [..., 3] on a sphere around the origin."""
    elevation = torch.deg2rad(torch.as_tensor(elevation_deg, dtype=torch.float32))
    azimuth = torch.deg2rad(torch.as_tensor(azimuth_deg, dtype=torch.float32))
    radius = torch.as_tensor(radius, dtype=torch.float32)
    elevation, azimuth, radius = torch.broadcast_tensors(elevation, azimuth, radius)
    return torch.stack(
        [
            radius * torch.cos(elevation) * torch.sin(azimuth),
            radius * torch.sin(elevation),
            radius * torch.cos(elevation) * torch.cos(azimuth),
        ],
        dim=-1,
    )


def look_at_viewmat(position: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """World-to-camera [..., 4, 4] of OpenCV cameras at `position` [..., 3] looking at `target`.

    The world +y axis points up in the image (camera -y). Cameras exactly above or
    below the target (elevation +-90) are degenerate; orbit samplers stay inside +-89.
    """
    if target is None:
        target = torch.zeros_like(position)
    forward = torch.nn.functional.normalize(target - position, dim=-1)  # camera +z
    world_up = torch.tensor([0.0, 1.0, 0.0], dtype=position.dtype).expand_as(forward)
    right = torch.nn.functional.normalize(torch.linalg.cross(forward, world_up), dim=-1)  # +x
    down = torch.linalg.cross(forward, right)  # camera +y
    rotation = torch.stack([right, down, forward], dim=-2)  # rows = camera axes in world
    viewmat = torch.zeros(*position.shape[:-1], 4, 4, dtype=position.dtype)
    viewmat[..., :3, :3] = rotation
    viewmat[..., :3, 3] = -(rotation @ position[..., None])[..., 0]
    viewmat[..., 3, 3] = 1.0
    return viewmat


def orbit_cameras(
    elevations,
    azimuths,
    radius=REFERENCE_RADIUS,
    fovy: float = REFERENCE_FOVY,
    width: int = 256,
    height: int = 256,
) -> Cameras:
    """Cameras on an orbit around the origin; elevations/azimuths in degrees, [C] or scalars."""
    positions = orbit_position(elevations, azimuths, radius).reshape(-1, 3)  # [C, 3]
    viewmats = look_at_viewmat(positions)
    Ks = intrinsics_from_fovy(fovy, width, height).expand(len(positions), 3, 3).clone()
    return Cameras(viewmats, Ks, width, height)


def reference_camera(
    width: int = 256, height: int = 256, radius=REFERENCE_RADIUS, fovy=REFERENCE_FOVY, elevation: float = 0.0
) -> Cameras:
    """The input image's view: azimuth 0 at the photo's own `elevation` (degrees, positive = from above)."""
    return orbit_cameras(elevation, 0.0, radius, fovy, width, height)


def novel_elevation_range(reference_elevation: float, elevation_range=(-30.0, 30.0)) -> tuple[float, float]:
    """The range of novel-view elevations relative to the reference view, in degrees (DreamGaussian's rule).

    The relative range is widened so that it covers `elevation_range` both relative to the
    input's camera and in absolute terms, and narrowed so that no view passes +-80 degrees,
    where Zero123 was never trained (and look-at cameras degenerate at +-90).
    """
    low, high = elevation_range
    return (
        max(min(low, low - reference_elevation), -80.0 - reference_elevation),
        min(max(high, high - reference_elevation), 80.0 - reference_elevation),
    )


def sample_orbit_cameras(
    count: int,
    generator: torch.Generator,
    elevation_range=(-30.0, 30.0),
    azimuth_range=(-180.0, 180.0),
    radius=REFERENCE_RADIUS,
    fovy: float = REFERENCE_FOVY,
    width: int = 256,
    height: int = 256,
    reference_elevation: float = 0.0,
) -> tuple[Cameras, torch.Tensor, torch.Tensor]:
    """Uniformly random orbit cameras around the reference view at `reference_elevation`.

    Elevations are drawn from `novel_elevation_range` relative to the reference view.
    Returns (cameras, elevations [C], azimuths [C]) in absolute degrees.
    """

    def uniform(low, high):
        return low + (high - low) * torch.rand(count, generator=generator)

    elevations = reference_elevation + uniform(*novel_elevation_range(reference_elevation, elevation_range))
    azimuths = uniform(*azimuth_range)
    return orbit_cameras(elevations, azimuths, radius, fovy, width, height), elevations, azimuths


def zero123_camera_vector(
    elevations,
    azimuths,
    radii=REFERENCE_RADIUS,
    reference_elevation: float = 0.0,
    reference_azimuth: float = 0.0,
    reference_radius: float = REFERENCE_RADIUS,
    stable: bool = False,
) -> torch.Tensor:
    """Zero-1-to-3's relative camera T [B, 4] of target orbit views, from the reference view.

    Zero123: [Δpolar, sin Δazimuth, cos Δazimuth, Δradius] with angles in radians. Its polar
    angle is measured from the up axis (90° − elevation), so a target camera above the
    reference one has a *negative* Δpolar. Its azimuth turns the same way as ours (from +z
    towards +x about +y, DreamGaussian's convention, which drives Zero123 correctly).
    Stable Zero123 (`stable=True`) replaces Δradius with the reference view's absolute polar
    angle, 90° − reference elevation, in radians: its renders keep the input's distance.
    """
    flat = [torch.as_tensor(value, dtype=torch.float32).reshape(-1) for value in (elevations, azimuths, radii)]
    elevations, azimuths, radii = torch.broadcast_tensors(*flat)  # [B] each
    delta_polar = torch.deg2rad(reference_elevation - elevations)
    delta_azimuth = torch.deg2rad(azimuths - reference_azimuth)
    if stable:
        last = torch.full_like(elevations, math.radians(90.0 - reference_elevation))
    else:
        last = radii - reference_radius
    return torch.stack([delta_polar, torch.sin(delta_azimuth), torch.cos(delta_azimuth), last], dim=-1)
