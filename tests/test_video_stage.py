"""The video stage's sources through scripts/train.py: SVD (tiny random weights) and the user's clip."""

import numpy as np
import pytest
import torch
from PIL import Image
from test_cli import TINY_4D, assert_clean_error, train, write_rgba

from dynapose4d.cli import expand_shortcuts
from dynapose4d.data.image import key_out_background
from dynapose4d.export import load_png


def test_video_shortcut_names_a_clip_unless_it_names_a_video_config():
    assert expand_shortcuts(["video=clips/cat.mp4", "seed=1"]) == ["video=file", "video.path=clips/cat.mp4", "seed=1"]
    assert expand_shortcuts(["video=svd", "video.steps=2"]) == ["video=svd", "video.steps=2"]


def test_keying_out_the_background_gives_soft_edges():
    white = torch.ones(3)
    pixels = torch.tensor([[1.0, 1.0, 1.0], [0.97, 0.98, 1.0], [0.92, 1.0, 1.0], [0.2, 0.5, 0.9]])
    alpha = key_out_background(pixels, white)[:, 0]
    torch.testing.assert_close(alpha, torch.tensor([0.0, 0.0, 0.5, 1.0]))


def test_svd_drives_the_dynamic_stage_from_a_single_image(tmp_path, tiny_svd_dir):
    image = write_rgba(tmp_path / "box.png")
    svd = [f"video.model={tiny_svd_dir}", "video.num_frames=3", "video.steps=2", "video.height=32", "video.width=64"]
    result = train(f"image={image}", f"run_dir={tmp_path / 'run'}", *TINY_4D, *svd, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    frames = sorted((tmp_path / "run" / "video" / "frames").glob("*.png"))
    assert len(frames) == 3 and (tmp_path / "run" / "video" / "driving.mp4").exists()
    first = load_png(frames[0])
    assert first.shape == (48, 48, 4) and 0 <= first.min() and first.max() <= 1
    assert (tmp_path / "run" / "dynamic" / "DONE").exists()
    assert len(list((tmp_path / "run" / "dynamic" / "frames").glob("*.ply"))) == 3


def write_clip(directory, count: int = 4):
    """RGBA frames 0.png ... of a square moving right on a transparent canvas."""
    directory.mkdir()
    for index in range(count):
        pixels = np.zeros((40, 60, 4), dtype=np.uint8)
        pixels[12:28, 10 + 5 * index : 26 + 5 * index] = (40, 120, 220, 255)
        Image.fromarray(pixels, "RGBA").save(directory / f"{index}.png")
    return directory


def test_a_user_clip_replaces_svd_and_its_first_frame_is_the_input_image(tmp_path):
    clip = write_clip(tmp_path / "clip")
    result = train(f"video={clip}", f"run_dir={tmp_path / 'run'}", *TINY_4D, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run = tmp_path / "run"
    frames = sorted((run / "video" / "frames").glob("*.png"))
    assert len(frames) == 4
    torch.testing.assert_close(load_png(run / "input" / "reference.png"), load_png(frames[0]))
    assert not torch.equal(load_png(frames[0]), load_png(frames[-1]))  # the motion is kept
    assert (run / "dynamic" / "DONE").exists()


@pytest.mark.parametrize(
    ("make_clip", "message"),
    [
        (lambda tmp: tmp / "missing.mp4", "input video not found"),
        (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "has no frames"),
    ],
)
def test_a_bad_clip_fails_before_the_run_starts(tmp_path, make_clip, message):
    result = train(f"video={make_clip(tmp_path)}", f"output_dir={tmp_path / 'out'}", *TINY_4D, cwd=tmp_path)
    assert_clean_error(result, message)
    assert not (tmp_path / "out").exists()
