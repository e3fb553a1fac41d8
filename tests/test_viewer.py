"""The web viewer: the scene a run directory gives, the controls, where it listens, and the splats in a real browser.

The browser tests open the viewer in headless Chromium (software WebGL) and read its
screenshots: the first view is the reference camera's, matching the package's own render
from there; the splats are drawn where the object is, and moving the time slider moves them.
They skip, saying why, only where Chromium is not installed (.ci/run installs Debian's).
"""

import importlib.util
import logging
import math
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from dynapose4d.cameras import orbit_cameras, reference_camera
from dynapose4d.errors import DynaPoseError
from dynapose4d.gaussians import GaussianModel
from dynapose4d.render.views import render_views
from dynapose4d.viewer import RunViewer, is_loopback, live_scene, load_run_scene, serve, serve_scene

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 1200, 800  # the browser window, pixels
# Where the ball can be: clear of the software-WebGL notice (top left), the axes (bottom left) and the controls (right).
ROWS, COLUMNS = slice(200, 700), slice(100, 850)
REFERENCE = {"elevation": 15.0, "radius": 2.5, "fovy": 40.0}  # a run's static.camera, none of them the default
RED = (0.9, 0.1, 0.1)
needs_chromium = pytest.mark.skipif(shutil.which("chromium") is None,
                                    reason="Chromium is not installed (apt-get install chromium)")  # fmt: skip


def blob(center: tuple[float, float, float], color: tuple[float, float, float], count: int = 400) -> dict:
    """Activated Gaussians: an opaque ball of radius 0.25 around `center`."""
    generator = torch.Generator().manual_seed(0)
    directions = torch.nn.functional.normalize(torch.randn(count, 3, generator=generator), dim=-1)
    radii = 0.25 * torch.rand(count, 1, generator=generator) ** (1 / 3)
    return {
        "means": torch.tensor(center) + directions * radii,
        "quats": torch.tensor([[1.0, 0.0, 0.0, 0.0]]).expand(count, 4),
        "scales": torch.full((count, 3), 0.04),
        "opacities": torch.full((count,), 0.95),
        "colors": torch.tensor(color).expand(count, 3),
    }


@pytest.fixture
def two_frame_run(tmp_path):
    """A run directory as the pipeline leaves it, by hand: a red ball that jumps from left to right."""
    frames = tmp_path / "run" / "dynamic" / "frames"
    frames.mkdir(parents=True)
    GaussianModel.from_tensors(blob((-0.5, 0.0, 0.0), (0.9, 0.1, 0.1))).save_ply(frames / "000.ply")
    GaussianModel.from_tensors(blob((0.5, 0.0, 0.0), (0.9, 0.1, 0.1))).save_ply(frames / "001.ply")
    return tmp_path / "run"


@pytest.fixture
def reference_run(tmp_path):
    """A run whose config names its own reference camera (REFERENCE), holding a red ball below left of the origin."""
    run_dir = tmp_path / "reference_run"
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"static": {"camera": REFERENCE}}), run_dir / ".hydra" / "config.yaml")
    (run_dir / "dynamic" / "frames").mkdir(parents=True)
    GaussianModel.from_tensors(blob((-0.3, -0.2, 0.1), RED)).save_ply(run_dir / "dynamic" / "frames" / "000.ply")
    return run_dir


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_pipeline_run_gives_every_frame_the_cameras_and_the_keypoint_overlays(tiny_synthetic_config, tmp_path):
    from dynapose4d.pipeline import run

    run_dir = run(tiny_synthetic_config(f"run_dir={tmp_path / 'run'}"))
    scene = load_run_scene(run_dir)
    assert len(scene.frames) == 2 and scene.static is not None  # TINY_SYNTHETIC: 2 frames
    model = {
        key: value.detach()
        for key, value in GaussianModel.load_ply(run_dir / "dynamic" / "frames" / "001.ply").activated().items()
    }
    np.testing.assert_allclose(scene.frames[1].centers, model["means"].numpy())
    covariance = scene.frames[1].covariances[0]  # R S S^T R^T, from the PLY's scales and rotation
    np.testing.assert_allclose(np.linalg.eigvalsh(covariance), np.sort(model["scales"][0].numpy() ** 2), rtol=1e-4)
    assert [frustum.name for frustum in scene.frustums] == ["reference", *(f"heldout_{i}" for i in range(4))]
    np.testing.assert_allclose(scene.frustums[0].camera_to_world[:3, 3], [0, 0, 2.0], atol=1e-5)  # radius 2, azimuth 0
    assert scene.overlays["skeleton"].shape == scene.overlays["plain"].shape == (2, 48, 48, 3)
    assert (scene.overlays["skeleton"] != scene.overlays["plain"]).any()  # the keypoints are drawn


def test_a_run_without_any_model_is_refused(tmp_path):
    with pytest.raises(DynaPoseError, match="holds no model yet"):
        load_run_scene(tmp_path)


def test_the_time_slider_shows_one_frame_at_a_time(two_frame_run):
    import viser

    server = viser.ViserServer(host="127.0.0.1", port=free_port(), verbose=False)
    try:
        viewer = RunViewer(server, load_run_scene(two_frame_run))
        assert [handle.visible for handle in viewer.frames] == [True, False]
        viewer.time.value = 1  # what dragging the slider does
        assert [handle.visible for handle in viewer.frames] == [False, True]
        viewer.show_cameras.value = False
        assert not any(handle.visible for handle in viewer.frustums)
    finally:
        server.stop()


def look_at_rotation(position: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Camera-to-world rotation [3, 3] (OpenCV columns: right, down, forward) of a browser camera
    at `position` [3] looking at `target` [3] with `up` [3] up in its image (three.js' lookAt)."""
    forward = (target - position) / np.linalg.norm(target - position)
    right = np.cross(forward, up) / np.linalg.norm(np.cross(forward, up))
    return np.stack([right, np.cross(forward, right), forward], axis=1)


def test_the_browser_starts_at_the_reference_camera_of_the_runs_config(reference_run):
    import viser

    camera = reference_camera(1, 1, REFERENCE["radius"], REFERENCE["fovy"], REFERENCE["elevation"])
    camera_to_world = torch.linalg.inv(camera.viewmats[0]).double().numpy()  # [4, 4]
    server = viser.ViserServer(host="127.0.0.1", port=free_port(), verbose=False)
    try:
        RunViewer(server, load_run_scene(reference_run))
        initial = server.initial_camera  # what every browser that connects starts at
        np.testing.assert_allclose(initial.position, camera_to_world[:3, 3], atol=1e-5)
        np.testing.assert_allclose(initial.look_at, [0.0, 0.0, 0.0], atol=1e-5)  # the origin, as the renders
        np.testing.assert_allclose(initial.up, [0.0, 1.0, 0.0], atol=1e-5)  # world +y, as the renders
        rotation = look_at_rotation(initial.position, initial.look_at, initial.up)
        np.testing.assert_allclose(rotation, camera_to_world[:3, :3], atol=1e-5)
        assert initial.fov == pytest.approx(math.radians(REFERENCE["fovy"]))
    finally:
        server.stop()


def test_the_live_viewer_starts_at_the_same_reference_camera(reference_run):
    run_view = load_run_scene(reference_run).view
    live_view = live_scene([], OmegaConf.create(REFERENCE), fps=8.0).view  # what viewer=true serves
    for key in ("position", "look_at", "up"):
        np.testing.assert_allclose(getattr(live_view, key), getattr(run_view, key), atol=1e-6)
    assert live_view.fovy == pytest.approx(run_view.fovy)


@pytest.mark.parametrize(
    "host, loopback",
    [("127.0.0.1", True), ("127.0.1.1", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("10.1.2.3", False), ("gpu-node-7", False)],
)  # fmt: skip
def test_only_loopback_hosts_keep_the_viewer_to_this_machine(host, loopback):
    assert is_loopback(host) == loopback


def test_the_viewer_listens_on_this_machine_unless_told_and_warns_once_when_shared(two_frame_run, caplog):
    scene = load_run_scene(two_frame_run)
    for host, warnings in ((None, 0), ("0.0.0.0", 1)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="dynapose4d.viewer"):
            server, _ = serve_scene(scene, port=free_port()) if host is None else serve_scene(scene, host, free_port())
        try:
            assert server.get_host() == (host or "127.0.0.1")
            messages = [record.getMessage() for record in caplog.records if record.name == "dynapose4d.viewer"]
            assert len(messages) == warnings
            assert all(f"anyone who can reach this machine on port {server.get_port()}" in m for m in messages)
        finally:
            server.stop()


def test_scripts_view_and_viewer_true_listen_on_this_machine_by_default():
    spec = importlib.util.spec_from_file_location("view_script", ROOT / "scripts" / "view.py")
    view = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(view)
    assert view.arguments().parse_args(["outputs/run"]).host == "127.0.0.1"
    assert view.arguments().parse_args(["outputs/run", "--host", "0.0.0.0"]).host == "0.0.0.0"
    assert OmegaConf.load(ROOT / "configs" / "train.yaml").viewer_host == "127.0.0.1"


def screenshot(url: str, path) -> np.ndarray:
    """The page after 8 s of (virtual) time, rendered by headless Chromium with software WebGL."""
    command = [shutil.which("chromium"), "--headless=new", "--no-sandbox", "--use-angle=swiftshader",
               "--enable-unsafe-swiftshader", f"--window-size={WIDTH},{HEIGHT}", "--virtual-time-budget=8000",
               f"--screenshot={path}", url]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)


def red(image: np.ndarray) -> np.ndarray:
    """[rows, columns] pixels of the ball's hue (blended with the white background) in the clear region."""
    image = image[ROWS, COLUMNS]
    return (image[..., 0] > image[..., 1] + 60) & (image[..., 0] > image[..., 2] + 60)


def silhouette(image: np.ndarray) -> np.ndarray:
    """The red ball's centroid (x, y) and bounding box (left, top, right, bottom) [6], fractions of the window."""
    rows, columns = np.nonzero(red(image))
    x, y = (columns + COLUMNS.start) / WIDTH, (rows + ROWS.start) / HEIGHT
    return np.array([x.mean(), y.mean(), x.min(), y.min(), x.max(), y.max()])


def render(gaussians: dict, camera) -> np.ndarray:
    """The package's own render [H, W, 3] over white, 0-255 as a screenshot's."""
    image = render_views(gaussians, camera, torch.ones(3), "torch")[0]
    return (image.numpy() * 255).round().astype(np.int16)


@needs_chromium
def test_the_browser_opens_at_the_reference_view_as_a_render_from_there_shows_it(reference_run, tmp_path):
    server, _ = serve(reference_run, port=free_port())  # the cameras shown, as a user first sees it
    try:
        first = screenshot(f"http://127.0.0.1:{server.get_port()}", tmp_path / "viewer_initial.png")
    finally:
        server.stop()
    ball = GaussianModel.load_ply(reference_run / "dynamic" / "frames" / "000.ply").activated()
    radius, fovy = REFERENCE["radius"], REFERENCE["fovy"]
    expected = silhouette(render(ball, reference_camera(WIDTH, HEIGHT, radius, fovy, REFERENCE["elevation"])))
    # Where the viewer opened before: 20 degrees up, 35 to the right, 1.3 times as far.
    before = silhouette(render(ball, orbit_cameras(20.0, 35.0, 1.3 * radius, fovy, WIDTH, HEIGHT)))
    tolerance = 0.02  # of the window's width or height
    assert np.abs(before - expected).max() > 3 * tolerance  # so the comparison tells the two views apart
    # The ball where the render has it, and nothing else red: the reference frustum, whose apex is the
    # eye, would otherwise frame the window in thick red lines.
    np.testing.assert_allclose(silhouette(first), expected, atol=tolerance)


@needs_chromium
def test_the_splats_are_drawn_in_a_real_browser_and_follow_the_time_slider(two_frame_run, tmp_path):
    server, viewer = serve(two_frame_run, host="127.0.0.1", port=free_port())
    try:
        viewer.show_cameras.value = False  # only the splats in the picture
        url = f"http://127.0.0.1:{server.get_port()}"
        first = screenshot(url, tmp_path / "viewer_frame_0.png")
        viewer.time.value = 1
        second = screenshot(url, tmp_path / "viewer_frame_1.png")
    finally:
        server.stop()

    middle = WIDTH // 2 - COLUMNS.start
    left, right = slice(0, middle), slice(middle, None)
    # The ball sits left of centre at frame 0 and right of it at frame 1 (the reference view looks down -z, +x right).
    assert red(first)[:, left].sum() > 200 and red(first)[:, right].sum() < red(first)[:, left].sum() / 10
    assert red(second)[:, right].sum() > 200 and red(second)[:, left].sum() < red(second)[:, right].sum() / 10


def test_viewer_true_shows_the_model_of_every_refresh_step_while_it_trains(
    tiny_synthetic_config, tmp_path, monkeypatch
):
    from dynapose4d.checkpoint import load_checkpoint
    from dynapose4d.pipeline import run

    shown, hosts = [], set()

    def replace_frames(viewer, frames):
        shown.append(frames)
        hosts.add(viewer.server.get_host())
        original(viewer, frames)

    original = RunViewer.replace_frames
    monkeypatch.setattr(RunViewer, "replace_frames", replace_frames)
    settings = ["stages=[static]", "viewer=true", f"viewer_port={free_port()}", "viewer_every=2"]
    run_dir = run(tiny_synthetic_config(f"run_dir={tmp_path / 'run'}", *settings))
    assert len(shown) == 3 and all(len(frames) == 1 for frames in shown)  # steps 2, 4 and 6 of 6
    assert hosts == {"127.0.0.1"}  # viewer_host's default: this machine only
    final = load_checkpoint(run_dir / "static" / "checkpoint.pt")["model"]["means"]
    np.testing.assert_allclose(shown[-1][0].centers, final.numpy())
