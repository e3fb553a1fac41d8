"""Benchmark layouts built in tmp: Consistent4D ground truth and renders read back and scored,
Animate124 folders, and clear errors for malformed layouts."""

import json
import math
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from dynapose4d.errors import DynaPoseError
from dynapose4d.eval.frames import resize_frames
from dynapose4d.eval.layouts import (
    animate124_cases,
    consistent4d_objects,
    load_animate124_image,
    load_consistent4d_views,
    load_view_frames,
    save_view_frames,
)
from dynapose4d.eval.scoring import score_animate124, score_consistent4d_folders
from dynapose4d.eval.suite import MetricSuite

VIEWS, FRAMES, SIZE = 4, 3, 16
NOISE = 8  # 8-bit levels between renders and ground truth at every pixel


def _gt_rgba(seed: int) -> np.ndarray:
    """[V, T, 16, 16, 4] uint8 frames: opaque pixels spanning 0..255, a transparent border, one half-alpha pixel."""
    rng = np.random.default_rng(seed)
    rgba = rng.integers(0, 256, size=(VIEWS, FRAMES, SIZE, SIZE, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[..., 0, 0, :3], rgba[..., 0, 1, :3] = 0, 255  # each frame spans black to white: PSNR data range 1
    rgba[..., -1, :, 3] = 0  # transparent bottom row: white after compositing
    rgba[..., 5, 5, :] = (100, 50, 200, 128)
    return rgba


@pytest.fixture
def consistent4d_root(tmp_path):
    """eval_gt/<object>/eval_{0..3}/{0..2}.png (RGBA) for two objects."""
    root = tmp_path / "eval_gt"
    for seed, name in enumerate(("skull", "aurorus")):
        for view, video in enumerate(_gt_rgba(seed)):
            (root / name / f"eval_{view}").mkdir(parents=True)
            for frame, pixels in enumerate(video):
                Image.fromarray(pixels, "RGBA").save(root / name / f"eval_{view}" / f"{frame}.png")
    return root


def test_ground_truth_reads_back_composited_on_white(consistent4d_root):
    assert consistent4d_objects(consistent4d_root) == ["aurorus", "skull"]
    views = load_consistent4d_views(consistent4d_root, "skull")  # [V, T, H, W, 3]
    rgba = _gt_rgba(0)
    assert views.shape == (VIEWS, FRAMES, SIZE, SIZE, 3)
    np.testing.assert_array_equal((views[1, 2, 3] * 255).round().numpy(), rgba[1, 2, 3, :, :3])  # opaque row
    assert torch.all(views[:, :, -1] == 1)  # transparent -> white
    # DreamGaussian4D's add_bg_to_gt.py: round(rgb * a + 255 * (1 - a)) with a = 128 / 255
    expected = [round(c * 128 / 255 + 255 * 127 / 255) for c in (100, 50, 200)]  # [177, 152, 227]
    assert (views[0, 0, 5, 5] * 255).round().tolist() == expected


def _noisy(views: torch.Tensor) -> torch.Tensor:
    """Every value moved by NOISE levels, towards the middle where it would clip: mse = (NOISE / 255)^2 exactly."""
    levels = (views * 255).round()
    sign = torch.where(torch.rand(levels.shape, generator=torch.Generator().manual_seed(0)) < 0.5, -1.0, 1.0)
    sign = torch.where(levels < NOISE, 1.0, torch.where(levels > 255 - NOISE, -1.0, sign))
    return (levels + NOISE * sign) / 255


def test_renders_with_known_noise_score_the_expected_psnr(consistent4d_root, tmp_path):
    pred_root = tmp_path / "pred"
    for name in consistent4d_objects(consistent4d_root):
        save_view_frames(pred_root / name, _noisy(load_consistent4d_views(consistent4d_root, name)))
    suite = MetricSuite(skipped={"lpips": "no LPIPS here", "clip": "no CLIP here", "fvd": "no I3D here"})
    scores = score_consistent4d_folders(consistent4d_root, pred_root, suite, size=SIZE)  # 16 px: no resampling
    expected = 20 * math.log10(255 / NOISE)  # 30.07 dB in every frame, view and object
    assert scores["objects"]["skull"]["psnr"]["per_view"] == pytest.approx([expected] * VIEWS)
    assert scores["summary"]["psnr"]["mean"] == pytest.approx(expected)
    assert 0 < scores["summary"]["ssim"]["mean"] < 1
    assert scores["summary"]["lpips"] == {"skipped": "no LPIPS here"}
    assert scores["summary"]["fvd"] == {"skipped": "no I3D here"}


def test_identical_renders_score_infinite_psnr(consistent4d_root):
    suite = MetricSuite()
    scores = score_consistent4d_folders(consistent4d_root, consistent4d_root, suite, size=SIZE)
    assert scores["summary"]["psnr"]["mean"] == math.inf  # not capped: torchmetrics gives inf too
    assert scores["summary"]["ssim"]["mean"] == pytest.approx(1.0)


def test_frames_are_resized_with_bicubic_on_the_8_bit_grid():
    frames = torch.rand(2, 16, 16, 3)
    resized = resize_frames(frames, 32)
    assert resized.shape == (2, 32, 32, 3)
    assert torch.equal((resized * 255).round(), resized * 255)


def test_malformed_consistent4d_layouts_say_what_is_wrong(consistent4d_root, tmp_path):
    skull = consistent4d_root / "skull"
    with pytest.raises(DynaPoseError, match="no such directory"):
        consistent4d_objects(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DynaPoseError, match="no object directories"):
        consistent4d_objects(tmp_path / "empty")

    (skull / "eval_1" / "1.png").unlink()
    with pytest.raises(DynaPoseError, match=r"missing frames 1\.png"):
        load_consistent4d_views(consistent4d_root, "skull")
    (skull / "eval_1" / "2.png").rename(skull / "eval_1" / "1.png")
    with pytest.raises(DynaPoseError, match="different numbers of frames"):
        load_consistent4d_views(consistent4d_root, "skull")

    shutil.rmtree(skull / "eval_1")
    with pytest.raises(DynaPoseError, match="missing view directories eval_1"):
        load_consistent4d_views(consistent4d_root, "skull")

    aurorus = consistent4d_root / "aurorus"
    Image.new("RGBA", (8, 8)).save(aurorus / "eval_2" / "1.png")
    with pytest.raises(DynaPoseError, match=r"mixed sizes .* eval_2/1\.png is 8x8"):
        load_consistent4d_views(consistent4d_root, "aurorus")


def test_renders_must_match_the_ground_truth(consistent4d_root, tmp_path):
    pred_root = tmp_path / "pred"
    save_view_frames(pred_root / "skull", load_consistent4d_views(consistent4d_root, "skull"))
    with pytest.raises(DynaPoseError, match="no directory for aurorus"):
        score_consistent4d_folders(consistent4d_root, pred_root, MetricSuite(), size=SIZE)
    save_view_frames(pred_root / "aurorus", load_consistent4d_views(consistent4d_root, "aurorus")[:, :2])
    with pytest.raises(DynaPoseError, match="2 frames, the ground truth 4 views x 3 frames"):
        score_consistent4d_folders(consistent4d_root, pred_root, MetricSuite(), size=SIZE)


@pytest.fixture
def animate124_root(tmp_path):
    root = tmp_path / "benchmark"
    cases = [{"name": "cat-wave", "caption": "a full-bodied cat is waving its paw"}, {"name": "fish", "caption": "x"}]
    for case in cases:
        (root / case["name"]).mkdir(parents=True)
        Image.new("RGB", (20, 12), (10, 20, 30)).save(root / case["name"] / "image.jpg")
    (root / "benchmark.json").write_text(json.dumps(cases))
    return root


def test_animate124_cases_and_renders(animate124_root, tmp_path):
    cases = animate124_cases(animate124_root)
    assert [(case.name, case.caption) for case in cases][0] == ("cat-wave", "a full-bodied cat is waving its paw")
    assert load_animate124_image(cases[0]).shape == (12, 20, 3)
    save_view_frames(tmp_path / "pred" / "cat-wave", torch.rand(2, 5, 16, 16, 3))  # any number of views
    renders = load_view_frames(tmp_path / "pred" / "cat-wave")
    assert renders.shape == (2, 5, 16, 16, 3)
    suite = MetricSuite(skipped={"clip": "no CLIP here"})
    assert score_animate124(renders, load_animate124_image(cases[0]), suite) == {"clip": {"skipped": "no CLIP here"}}
    with pytest.raises(DynaPoseError, match="no view directories"):
        load_view_frames(tmp_path / "pred")


def test_malformed_animate124_layouts_say_what_is_wrong(animate124_root, tmp_path):
    with pytest.raises(DynaPoseError, match="no benchmark.json"):
        animate124_cases(tmp_path)
    (animate124_root / "fish" / "image.jpg").unlink()
    with pytest.raises(DynaPoseError, match="no <name>/image.jpg for fish"):
        animate124_cases(animate124_root)
    (animate124_root / "benchmark.json").write_text(json.dumps({"name": "fish"}))
    with pytest.raises(DynaPoseError, match="expected a list"):
        animate124_cases(animate124_root)
