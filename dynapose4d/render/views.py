"""Renders a person looks at: reference view, orbit video and a grid of views."""

from pathlib import Path

import torch

from ..cameras import Cameras, orbit_cameras, reference_camera
from ..media import image_grid, save_png, write_video
from . import rasterize

GRID_AZIMUTHS = (0, 45, 90, 135, 180, 225, 270, 315)
ORBIT_ELEVATION = 15.0  # a little above the object, so its top shows as it turns


@torch.no_grad()
def render_views(
    gaussians: dict[str, torch.Tensor], cameras: Cameras, background: torch.Tensor, backend: str, chunk: int = 8
) -> torch.Tensor:
    """RGB renders [C, H, W, 3] of activated Gaussians over a background colour [3], a few cameras at a time."""
    images = []
    for start in range(0, len(cameras), chunk):
        batch = cameras[start : start + chunk]
        colors, _, _ = rasterize(
            **gaussians, viewmats=batch.viewmats, Ks=batch.Ks, width=cameras.width, height=cameras.height,
            backgrounds=background.expand(len(batch), 3), backend=backend,
        )  # fmt: skip
        images.append(colors.clamp(0, 1).cpu())
    return torch.cat(images)


def write_turntable(directory: Path, gaussians, background, cfg, size: int, camera) -> None:
    """reference.png, grid.png (8 azimuths) and orbit.mp4 (a full turn) of a static model."""
    directory.mkdir(parents=True, exist_ok=True)
    device = background.device
    backend = cfg.render.backend
    reference = reference_camera(size, size, camera.radius, camera.fovy, camera.elevation).to(device)
    save_png(directory / "reference.png", render_views(gaussians, reference, background, backend)[0])
    grid_cameras = orbit_cameras(torch.zeros(len(GRID_AZIMUTHS)), torch.tensor(GRID_AZIMUTHS, dtype=torch.float32),
                                 camera.radius, camera.fovy, size, size).to(device)  # fmt: skip
    save_png(directory / "grid.png", image_grid(render_views(gaussians, grid_cameras, background, backend), 4))
    count = cfg.static.orbit_views
    azimuths = torch.arange(count, dtype=torch.float32) * 360.0 / count
    orbit = orbit_cameras(torch.full((count,), ORBIT_ELEVATION), azimuths, camera.radius, camera.fovy, size, size)
    write_video(directory / "orbit.mp4", render_views(gaussians, orbit.to(device), background, backend), fps=24)
