"""scripts/train.py as a user runs it: bad input gives one clear line and a non-zero exit."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dynapose4d.checkpoint import load_checkpoint

TRAIN = Path(__file__).resolve().parents[1] / "scripts" / "train.py"
TINY_REAL = [
    "image_size=48",
    "static.iterations=4",
    "static.num_points=200",
    "static.render_size=48",
    "static.orbit_views=2",
    "static.batch_size=2",
    "static.prior=none",
    "static.novel_view_sizes=[[0,32],[0.5,48]]",
    "stages=[static]",
]

# Static, then video, then dynamic without KML (no keypoints stage needed), all tiny.
TINY_4D = [
    "image_size=48", "static.prior=none", "static.iterations=3", "static.num_points=200", "static.render_size=48",
    "static.orbit_views=2", "stages=[static,video,dynamic]", "dynamic.loss.kml=0", "dynamic.iterations=2",
    "dynamic.batch_size=2", "dynamic.render_size=48", "dynamic.orbit_frames=2", "dynamic.checkpoint_every=1",
    "dynamic/deformation=hexplane", "dynamic.deformation.resolution=[16,16,16,2]",
    "static.novel_view_sizes=[[0,32],[0.5,48]]", "dynamic.novel_view_sizes=[[0,32]]", "dynamic.views_per_frame=1",
]  # fmt: skip


def train(*overrides: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(TRAIN), *overrides], cwd=cwd, capture_output=True, text=True, timeout=300,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def write_rgba(path: Path, alpha_value: int = 255) -> Path:
    pixels = np.zeros((40, 60, 4), dtype=np.uint8)
    pixels[10:30, 20:40] = (200, 80, 40, alpha_value)  # an orange box on a transparent canvas
    Image.fromarray(pixels, "RGBA").save(path)
    return path


def assert_clean_error(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_real_rgba_image_runs_the_static_stage_with_zero123(tmp_path, tiny_zero123_dir):
    image = write_rgba(tmp_path / "box.png")
    output, zero123 = f"output_dir={tmp_path / 'out'}", ["static.prior=zero123", f"static.model={tiny_zero123_dir}"]
    result = train(f"image={image}", "name=box", output, *TINY_REAL, *zero123, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "prior=" in result.stderr  # the SDS loss is on the progress bar with the others
    (run_dir,) = (tmp_path / "out" / "box").iterdir()
    assert (run_dir / "static" / "DONE").exists() and (run_dir / "static" / "model.ply").exists()
    assert not (run_dir / "metrics.json").exists()  # no ground truth for a real image
    assert not list(tmp_path.glob("*.log"))  # nothing written outside the run directory


def missing_image(tmp: Path) -> Path:
    return tmp / "missing.png"


def text_file_named_png(tmp: Path) -> Path:
    (tmp / "notes.png").write_text("not an image")
    return tmp / "notes.png"


def fully_transparent_image(tmp: Path) -> Path:
    return write_rgba(tmp / "empty.png", alpha_value=0)


def rgb_without_alpha(tmp: Path) -> Path:
    Image.new("RGB", (32, 32), (9, 9, 9)).save(tmp / "rgb.png")
    return tmp / "rgb.png"


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (missing_image, "input image not found"),
        (text_file_named_png, "cannot read the input image"),
        (fully_transparent_image, "has no foreground"),
        (rgb_without_alpha, "has no alpha channel"),
    ],
)
def test_bad_images_fail_with_one_clear_message(tmp_path, make_input, message):
    # No rembg model here, and its download refused at once (a closed local proxy), not after timeouts.
    offline = {
        "U2NET_HOME": str(tmp_path / "rembg"),
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
    }
    result = train(
        f"image={make_input(tmp_path)}", f"output_dir={tmp_path / 'out'}", *TINY_REAL, cwd=tmp_path, env=offline
    )
    assert_clean_error(result, message)


def test_no_input_at_all_says_what_to_pass(tmp_path):
    assert_clean_error(train(f"output_dir={tmp_path / 'out'}", cwd=tmp_path), "pass image=")


def test_unknown_config_key_is_rejected_without_a_traceback(tmp_path):
    result = train("static.iterationz=3", "experiment=synthetic", cwd=tmp_path)
    assert_clean_error(result, "iterationz")


def test_unwritable_output_dir_is_reported(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a directory cannot be made inside a file, even as root
    image = write_rgba(tmp_path / "box.png")
    result = train(f"image={image}", f"output_dir={blocker / 'outputs'}", *TINY_REAL, cwd=tmp_path)
    assert_clean_error(result, "cannot write to the output directory")


def test_ctrl_c_leaves_a_loadable_checkpoint_and_resume_finishes(tmp_path):
    image = write_rgba(tmp_path / "box.png")
    run_dir = tmp_path / "run"
    overrides = [f"image={image}", f"run_dir={run_dir}", *TINY_REAL, "static.iterations=100000",
                 "static.checkpoint_every=1"]  # fmt: skip
    command = [sys.executable, str(TRAIN), *overrides]
    process = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    checkpoint = run_dir / "static" / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert checkpoint.exists(), "training never wrote a checkpoint"
    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired as timeout:
        process.kill()
        pytest.fail(f"no exit within 120 s of Ctrl-C; stderr ends: {(timeout.stderr or b'')[-2000:]!r}")
    assert process.returncode == 130
    assert "resume=true" in stderr and "Traceback" not in stderr
    step = load_checkpoint(checkpoint)["step"]
    assert step >= 1

    finish = train(*overrides[:-2], f"static.iterations={step + 2}", "resume=true", cwd=tmp_path)
    assert finish.returncode == 0, finish.stderr
    assert load_checkpoint(checkpoint)["step"] == step + 2
    assert (run_dir / "static" / "DONE").exists()
    assert os.path.getsize(run_dir / "static" / "model.ply") > 0


def test_bad_input_leaves_no_run_directory_behind(tmp_path):
    result = train("image=missing.png", f"output_dir={tmp_path / 'out'}", cwd=tmp_path)
    assert_clean_error(result, "input image not found")
    assert not (tmp_path / "out").exists()


def test_missing_zero123_weights_stop_the_run_before_it_starts(tmp_path):
    image = write_rgba(tmp_path / "box.png")
    offline = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-cache")}
    output = f"output_dir={tmp_path / 'out'}"
    result = train(f"image={image}", output, "stages=[static]", "static.prior=zero123", cwd=tmp_path, env=offline)
    assert_clean_error(result, "ashawkey/zero123-xl-diffusers")
    assert "static.model=" in result.stderr
    assert not (tmp_path / "out").exists()


def test_oracle_stages_with_a_real_image_say_what_they_need(tmp_path):
    image = write_rgba(tmp_path / "box.png")
    output = f"output_dir={tmp_path / 'out'}"
    result = train(f"image={image}", output, *TINY_REAL, "stages=[static,video]", "video=oracle", cwd=tmp_path)
    assert_clean_error(result, "video.source='oracle': needs ground truth: experiment=ground_truth sample=DIR")
    assert not (tmp_path / "out").exists()  # caught before anything ran


def test_bad_settings_are_all_named_at_once_with_exit_code_2_and_no_run_directory(tmp_path):
    bad = ["static.iterations=abc", "image_size=-5", "dynamic.kml_mode=bogus", "dynamic.prior=zeroo123"]
    result = train("experiment=synthetic", f"output_dir={tmp_path / 'out'}", *bad, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr + result.stdout
    # iterations=abc is named twice: where it is set, and in static.densify.stop, which interpolates it; image_size
    # five times: the ground-truth experiment renders at the sample's size (render_size, novel_view_sizes)
    assert "9 invalid settings; nothing was run and no run directory was made" in result.stderr
    for line in ("static.iterations='abc': must be an integer >= 1", "image_size=-5: must be an integer >= 16",
                 "dynamic.kml_mode='bogus': must be one of", "dynamic.prior='zeroo123': must be one of"):  # fmt: skip
        assert line in result.stderr
    assert not (tmp_path / "out").exists()


def test_one_command_runs_all_four_stages_on_a_real_image(
    tmp_path, tiny_zero123_dir, tiny_svd_dir, tiny_cape_checkpoint
):
    """`train.py image=...` with every model swapped for tiny random weights in its real format."""
    image = write_rgba(tmp_path / "box.png")
    models = [
        "static.prior=zero123", f"static.model={tiny_zero123_dir}", "static.batch_size=2",
        f"video.model={tiny_svd_dir}", "video.num_frames=2", "video.steps=2", "video.height=32", "video.width=64",
        f"keypoints.checkpoint={tiny_cape_checkpoint}", "keypoints.num_keypoints=4",
        "video.mask=background",  # rembg would try to fetch its model
    ]  # fmt: skip
    everything = [*TINY_4D, "stages=[static,video,keypoints,dynamic]", "dynamic.loss.kml=1"]
    result = train(f"image={image}", f"run_dir={tmp_path / 'run'}", *everything, *models, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert all((tmp_path / "run" / stage / "DONE").exists() for stage in ("static", "video", "keypoints", "dynamic"))
    assert "prior=" in result.stderr.rpartition("dynamic:")[2]  # the dynamic stage's novel views were scored by Zero123
