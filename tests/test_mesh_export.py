"""The animated mesh of a finished run: phi moves it as it moves the splats, in the GLB and per-frame files."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from conftest import CONFIG_DIR, TINY_SYNTHETIC, compose_config
from omegaconf import OmegaConf
from test_glb_in_browser import assert_valid, needs_validator
from test_gltf_export import read_accessor, read_glb

from dynapose4d.deform import normalised_time
from dynapose4d.errors import DynaPoseError
from dynapose4d.export.animated import export_run
from dynapose4d.gaussians import GaussianModel
from dynapose4d.pipeline import run
from dynapose4d.run import Run
from dynapose4d.stages.phi import trained_motion

ROOT = Path(__file__).resolve().parents[1]
MESH_DEFAULTS = OmegaConf.load(Path(CONFIG_DIR) / "mesh" / "default.yaml")
MESH = ["mesh.resolution=40", "mesh.face_budget=3000", "mesh.threshold=0.3"]  # 6 static steps: a faint model


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A tiny synthetic run whose dynamic stage also wrote the animated mesh (dynamic.export_mesh=true)."""
    out = tmp_path_factory.mktemp("export")
    # A learning rate 10x the default: the 4 tiny steps then move phi visibly (by 1e-3, not 1e-5).
    overrides = [
        *TINY_SYNTHETIC,
        f"output_dir={out}",
        "dynamic.export_mesh=true",
        "dynamic.lr.deformation=6.4e-3",
        *MESH,
    ]
    return run(compose_config(overrides))


def glb_frames(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The GLB read back independently: canonical positions [V, 3], positions per frame [T, V, 3], faces [F, 3],
    and the frame rate its animation keys imply."""
    document, binary = read_glb(path)
    primitive = document["meshes"][0]["primitives"][0]
    base = read_accessor(document, binary, primitive["attributes"]["POSITION"])
    targets = [read_accessor(document, binary, target["POSITION"]) for target in primitive["targets"]]
    faces = read_accessor(document, binary, primitive["indices"]).reshape(-1, 3)
    times = read_accessor(document, binary, document["animations"][0]["samplers"][0]["input"])
    fps = 1.0 / float(times[1] - times[0]) if len(times) > 1 else float("nan")
    return base, base[None] + np.stack(targets), faces, fps


def test_the_glb_moves_the_canonical_mesh_by_phi_as_phi_moves_the_splats(finished_run):
    base, frames, faces, fps = glb_frames(finished_run / "dynamic" / "mesh" / "animated.glb")
    num_frames = len(list((finished_run / "dynamic" / "frames").glob("*.ply")))
    assert frames.shape == (num_frames, len(base), 3) and len(faces) <= 3000
    assert fps == pytest.approx(compose_config(TINY_SYNTHETIC).video.fps, rel=1e-5)

    config = compose_config([*TINY_SYNTHETIC, f"run_dir={finished_run}"])
    model, deformation, count = trained_motion(Run(config, finished_run, torch.device("cpu")))
    assert count == num_frames
    t = normalised_time(torch.arange(count, dtype=torch.float32), count)
    with torch.no_grad():
        expected = deformation.deform_points(torch.from_numpy(base), t).numpy()  # [T, V, 3]
        splats = deformation.deform_points(model.params["means"].detach(), t).numpy()  # [T, N, 3]
    np.testing.assert_allclose(frames, expected, atol=1e-5)
    assert np.abs(frames[-1] - frames[0]).max() > 1e-3  # phi moved the mesh
    for frame in range(count):  # the phi rebuilt from the checkpoint is the one that wrote the splats
        saved = (
            GaussianModel.load_ply(finished_run / "dynamic" / "frames" / f"{frame:03d}.ply").params["means"].detach()
        )
        np.testing.assert_allclose(splats[frame], saved.numpy(), atol=1e-5)


def test_a_run_trained_with_gsplat_exports_on_a_machine_without_cuda(finished_run):
    """Rebuilding phi renders nothing (the skeleton's joints are the checkpoint's), so the run's render.backend,
    which this machine may not have, is never asked for."""
    config = compose_config([*TINY_SYNTHETIC, f"run_dir={finished_run}", "render=gsplat"])
    model, deformation, count = trained_motion(Run(config, finished_run, torch.device("cpu")))
    t = normalised_time(torch.arange(count, dtype=torch.float32), count)
    with torch.no_grad():
        last = deformation.deform_points(model.params["means"].detach(), t)[-1]  # [N, 3]
    saved = GaussianModel.load_ply(finished_run / "dynamic" / "frames" / f"{count - 1:03d}.ply").params["means"]
    np.testing.assert_allclose(last.numpy(), saved.detach().numpy(), atol=1e-5)


@needs_validator
def test_the_runs_glb_passes_the_khronos_validator(finished_run):
    report = assert_valid(finished_run / "dynamic" / "mesh" / "animated.glb")
    assert report["info"]["totalVertexCount"] == len(glb_frames(finished_run / "dynamic" / "mesh" / "animated.glb")[0])


def test_scripts_export_writes_one_obj_per_frame_and_names_what_is_wrong(finished_run, tmp_path):
    command = [sys.executable, str(ROOT / "scripts" / "export.py"), str(finished_run), "--format", "obj", *MESH]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    paths = sorted((finished_run / "dynamic" / "mesh" / "obj").glob("*.obj"))
    base, frames, faces, _ = glb_frames(finished_run / "dynamic" / "mesh" / "animated.glb")
    assert len(paths) == len(frames)
    for path, positions in zip(paths, frames):
        mesh = trimesh.load(path, process=False)
        np.testing.assert_allclose(mesh.vertices, positions, atol=1e-5)  # the same mesh, the same motion
        assert len(mesh.faces) == len(faces)

    with pytest.raises(DynaPoseError, match=r"unknown setting\(s\) mesh.resolutoin, static.iterations"):
        export_run(finished_run, MESH_DEFAULTS, "glb", ["mesh.resolutoin=8", "static.iterations=3"])
    with pytest.raises(DynaPoseError, match="not a run directory"):
        export_run(tmp_path, MESH_DEFAULTS, "glb")
    result = subprocess.run([*command[:2], str(tmp_path)], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr
