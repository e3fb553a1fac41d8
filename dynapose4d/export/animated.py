"""The 4D result as one animated mesh: the canonical Gaussians' surface, moved by phi itself.

    mesh      marching cubes on the canonical Gaussians' density (mesh.py), vertex colours from them
    motion    every vertex carried by the trained deformation network to each driving frame, so the mesh
              moves exactly as the splats do (topology fixed)
    files     <run>/dynamic/mesh/animated.glb (glTF morph targets, one animation at the video's frame
              rate: gltf.py), or one OBJ / PLY per frame in <run>/dynamic/mesh/<format>/

scripts/export.py runs it on a finished run; `dynamic.export_mesh=true` runs it after training.
"""

import logging
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ..deform import Deformation, normalised_time
from ..errors import DynaPoseError
from ..gaussians import GaussianModel
from ..run import Run
from ..run_dir import CONFIG_DIR as RUN_CONFIG_DIR
from ..run_dir import recorded_config
from ..stages.phi import trained_motion
from . import FORMATS
from .gltf import write_animated_glb, write_frame_meshes
from .mesh import Mesh, extract_mesh

log = logging.getLogger(__name__)
VERTEX_CHUNK = 16384  # vertices per pass through phi: its activations grow with points x frames


@torch.no_grad()
def moved_vertices(deformation: Deformation, vertices: np.ndarray, num_frames: int) -> np.ndarray:
    """The canonical `vertices` [V, 3] carried by phi to each driving frame: [T, V, 3]."""
    device = next(deformation.parameters()).device
    t = normalised_time(torch.arange(num_frames, dtype=torch.float32), num_frames).to(device)  # [T]
    points = torch.from_numpy(vertices).to(device)
    chunks = [deformation.deform_points(points[start : start + VERTEX_CHUNK], t).cpu()
              for start in range(0, len(points), VERTEX_CHUNK)]  # fmt: skip
    return torch.cat(chunks, dim=1).numpy().astype(np.float32)


def export_animated_mesh(
    model: GaussianModel,  # the canonical Gaussians phi moves
    deformation: Deformation,
    num_frames: int,
    settings: DictConfig,  # the config's `mesh`
    directory: Path,  # <run>/dynamic/mesh
    fps: float,
    fmt: str,
) -> list[Path]:
    """Extract the canonical mesh, move it with phi and write it as `fmt`; returns the files written."""
    if fmt not in FORMATS:
        raise ValueError(f"mesh format must be one of {FORMATS}, got {fmt!r}")
    start = time.perf_counter()
    gaussians = {key: value.detach().cpu() for key, value in model.activated().items()}
    mesh: Mesh = extract_mesh(
        gaussians, resolution=settings.resolution, threshold=settings.threshold, face_budget=settings.face_budget,
        min_piece_fraction=settings.min_piece_fraction,
    )  # fmt: skip
    frames = moved_vertices(deformation, mesh.vertices, num_frames)  # [T, V, 3]
    if fmt == "glb":
        paths = [directory / "animated.glb"]
        write_animated_glb(paths[0], mesh.vertices, mesh.faces, mesh.colors, frames, fps)
    else:
        paths = write_frame_meshes(directory / fmt, frames, mesh.faces, mesh.colors, fmt)
    size, where = sum(path.stat().st_size for path in paths), paths[0] if len(paths) == 1 else paths[0].parent
    log.info("mesh: %d vertices, %d faces, %d frames -> %s (%.1f MB, %.1f s)", len(mesh.vertices), len(mesh.faces),
             num_frames, where, size / 1e6, time.perf_counter() - start)  # fmt: skip
    return paths


def export_run(run_dir: Path, defaults: DictConfig, fmt: str | None = None, overrides: list[str] = ()) -> list[Path]:
    """scripts/export.py: the finished run in `run_dir` as an animated mesh in `fmt` (None: mesh.format), with
    `mesh.KEY=VALUE` overrides of its `mesh` settings, or of `defaults` (configs/mesh/default.yaml) for a run
    that has none."""
    run_dir = Path(run_dir)
    config = recorded_config(run_dir)
    if config is None:
        raise DynaPoseError(f"{run_dir} is not a run directory: it has no {RUN_CONFIG_DIR}/config.yaml")
    settings = OmegaConf.merge(defaults, config.get("mesh") or {})
    keys = [item.split("=", 1)[0] if "=" in item else item for item in overrides]
    unknown = [key for key in keys if key.removeprefix("mesh.") not in settings or not key.startswith("mesh.")]
    if unknown:
        raise DynaPoseError(f"unknown setting(s) {', '.join(unknown)}: export takes mesh.{{{', '.join(settings)}}}")
    settings = OmegaConf.merge(settings, OmegaConf.from_dotlist(list(overrides)).get("mesh", {}))
    run = Run(config, run_dir, torch.device("cpu"))
    model, deformation, num_frames = trained_motion(run)
    fps = float(OmegaConf.select(config, "video.fps", default=8))
    directory = run.stage_dir("dynamic") / "mesh"
    return export_animated_mesh(model, deformation, num_frames, settings, directory, fps, fmt or settings.format)
