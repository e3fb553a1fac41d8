"""The web viewer: the scene a run directory gives, the controls, and the splats in a real browser.

The browser test opens the viewer in headless Chromium (software WebGL) and reads its
screenshots: the splats are drawn where the object is, and moving the time slider moves them.
It skips, saying why, only where Chromium is not installed (.ci/run installs Debian's).
"""

import shutil
import socket
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from dynapose4d.errors import DynaPoseError
from dynapose4d.gaussians import GaussianModel
from dynapose4d.viewer import RunViewer, load_run_scene, serve

WIDTH, HEIGHT = 1200, 800  # the browser window, pixels
# Where the ball can be: clear of the software-WebGL notice (top left), the axes (bottom left) and the controls (right).
ROWS, COLUMNS = slice(200, 700), slice(100, 850)


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


def screenshot(url: str, path) -> np.ndarray:
    """The page after 8 s of (virtual) time, rendered by headless Chromium with software WebGL."""
    command = [shutil.which("chromium"), "--headless=new", "--no-sandbox", "--use-angle=swiftshader",
               "--enable-unsafe-swiftshader", f"--window-size={WIDTH},{HEIGHT}", "--virtual-time-budget=8000",
               f"--screenshot={path}", url]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium is not installed (apt-get install chromium)")
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

    def red(image):  # [rows, columns] pixels of the ball's hue (blended with the white background)
        image = image[ROWS, COLUMNS]
        return (image[..., 0] > image[..., 1] + 60) & (image[..., 0] > image[..., 2] + 60)

    middle = WIDTH // 2 - COLUMNS.start
    left, right = slice(0, middle), slice(middle, None)
    # The ball sits left of centre at frame 0 and right of it at frame 1 (the view looks down -z, +x to the right).
    assert red(first)[:, left].sum() > 200 and red(first)[:, right].sum() < red(first)[:, left].sum() / 10
    assert red(second)[:, right].sum() > 200 and red(second)[:, left].sum() < red(second)[:, right].sum() / 10


def test_viewer_true_shows_the_model_of_every_refresh_step_while_it_trains(
    tiny_synthetic_config, tmp_path, monkeypatch
):
    from dynapose4d.checkpoint import load_checkpoint
    from dynapose4d.pipeline import run

    shown = []
    original = RunViewer.replace_frames
    monkeypatch.setattr(
        RunViewer, "replace_frames", lambda viewer, frames: shown.append(frames) or original(viewer, frames)
    )
    settings = ["stages=[static]", "viewer=true", f"viewer_port={free_port()}", "viewer_every=2"]
    run_dir = run(tiny_synthetic_config(f"run_dir={tmp_path / 'run'}", *settings))
    assert len(shown) == 3 and all(len(frames) == 1 for frames in shown)  # steps 2, 4 and 6 of 6
    final = load_checkpoint(run_dir / "static" / "checkpoint.pt")["model"]["means"]
    np.testing.assert_allclose(shown[-1][0].centers, final.numpy())
