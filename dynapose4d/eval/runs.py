"""Our trained runs as renders at a benchmark's evaluation views."""

from pathlib import Path

import torch

from ..cameras import Cameras
from ..data.image import WHITE  # both benchmarks composite on white
from ..errors import DynaPoseError
from ..gaussians import GaussianModel
from ..render.views import render_views


def latest_finished_run(directory: Path) -> Path:
    """The newest run under `directory` (<name>/<timestamp>/) whose dynamic stage finished, or `directory` itself."""
    directory = Path(directory)
    if (directory / "dynamic" / "DONE").exists():
        return directory
    runs = sorted(path for path in directory.glob("*") if (path / "dynamic" / "DONE").exists())
    if not runs:
        raise DynaPoseError(f"{directory} holds no finished run (no dynamic/DONE)")
    return runs[-1]


def render_run(
    run_dir: Path, cameras: Cameras, backend: str = "auto", device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Every frame of a run's 4D model (dynamic/frames/NNN.ply) from each camera: [V, T, H, W, 3] on white."""
    frames = sorted((Path(run_dir) / "dynamic" / "frames").glob("*.ply"))
    if not frames:
        raise DynaPoseError(f"{run_dir}: no dynamic/frames/*.ply to render")
    cameras = cameras.to(device)
    videos = []  # [T] of [V, S, S, 3]
    for path in frames:
        gaussians = {key: value.to(device) for key, value in GaussianModel.load_ply(path).activated().items()}
        with torch.no_grad():
            videos.append(render_views(gaussians, cameras, WHITE.to(device), backend))
    return torch.stack(videos, dim=1)  # [V, T, S, S, 3]
