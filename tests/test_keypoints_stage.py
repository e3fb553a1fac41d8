"""The keypoints stage with PoseAnything (tiny random weights in the official checkpoint format)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_SYNTHETIC, compose_config, local_weights

from dynapose4d.data.support import SupportKeypoints, load_support, save_support
from dynapose4d.data.synthetic import build_sample, make_subject
from dynapose4d.errors import DynaPoseError
from dynapose4d.pipeline import run
from dynapose4d.pretrained.poseanything import (
    POSEANYTHING_RELEASE,
    CapeDetector,
    build_cape,
    load_cape_checkpoint,
    poseanything_weights,
)
from dynapose4d.run import Run
from dynapose4d.stages import dynamic

ROOT = Path(__file__).resolve().parents[1]


def poseanything(checkpoint, tmp_path, *extra):
    return compose_config(
        [*TINY_SYNTHETIC, f"output_dir={tmp_path / 'out'}", "keypoints=poseanything",
         f"keypoints.checkpoint={checkpoint}", "keypoints.num_keypoints=6", *extra]
    )  # fmt: skip


def test_keypoints_for_every_frame_with_automatic_support(tiny_cape_checkpoint, tmp_path):
    run_dir = run(poseanything(tiny_cape_checkpoint, tmp_path, "stages=[video,keypoints]"))
    keypoints = torch.tensor(json.loads((run_dir / "keypoints" / "keypoints.json").read_text())["keypoints"])
    assert keypoints.shape == (2, 6, 2) and torch.isfinite(keypoints).all()
    support = load_support(run_dir / "keypoints" / "support.json", (48, 48))
    assert len(support.points) == 6 and len(support.skeleton) == 5  # a spanning tree
    assert (run_dir / "keypoints" / "overlay.mp4").stat().st_size > 0


def test_a_user_support_file_sets_the_keypoints_and_their_names(tiny_cape_checkpoint, tmp_path):
    points = torch.tensor([[20.5, 24.5], [26.5, 22.5], [30.5, 28.5]])
    support = SupportKeypoints(points, [(0, 1), (1, 2)], ["head", "back", "tail"], (48, 48))
    save_support(tmp_path / "support.json", support)
    config = poseanything(
        tiny_cape_checkpoint, tmp_path, "stages=[video,keypoints]", f"keypoints.support={tmp_path / 'support.json'}"
    )
    run_dir = run(config)
    written = json.loads((run_dir / "keypoints" / "keypoints.json").read_text())
    assert written["names"] == ["head", "back", "tail"] and torch.tensor(written["keypoints"]).shape == (2, 3, 2)


def test_kml_on_rendered_frames_uses_poseanything_end_to_end(tiny_cape_checkpoint, tmp_path):
    config = poseanything(tiny_cape_checkpoint, tmp_path, "dynamic.kml_mode=render", "dynamic.iterations=2")
    run_dir = run(config)
    assert (run_dir / "dynamic" / "DONE").exists()
    assert isinstance(dynamic.DynamicStage.from_run(Run(config, run_dir, torch.device("cpu"))).detector, CapeDetector)


def test_the_detector_is_differentiable_with_respect_to_the_frames():
    torch.manual_seed(0)
    sample = build_sample(make_subject("quadruped", num_frames=2, seed=0, num_gaussians=300), resolution=48)
    detector = CapeDetector(build_cape("tiny"), sample.image[..., :3], sample.keypoints.support[:4], [(0, 1), (1, 2)])
    frames = sample.driving_video[..., :3].clone().requires_grad_(True)
    keypoints = detector(frames)
    assert keypoints.shape == (2, 4, 2)
    keypoints.sum().backward()
    assert torch.isfinite(frames.grad).all() and frames.grad.abs().sum() > 0


@pytest.fixture
def torch_cache(tmp_path, monkeypatch) -> Path:
    """An empty torch hub cache, where the default checkpoint URL is downloaded to."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def default_poseanything(tmp_path, *extra):
    return compose_config([*TINY_SYNTHETIC, f"output_dir={tmp_path / 'out'}", "keypoints=poseanything", *extra])


def test_offline_the_default_checkpoint_is_named_before_the_run_starts(tmp_path, torch_cache, offline_hub):
    with pytest.raises(DynaPoseError) as error:
        run(default_poseanything(tmp_path))
    message = str(error.value)
    assert f"- PoseAnything: not in {torch_cache} and offline" in message and POSEANYTHING_RELEASE in message
    assert "keypoints.checkpoint=/path/to/it" in message and "--only poseanything" in message
    assert not (tmp_path / "out").exists()


def test_the_default_checkpoint_is_downloaded_once_into_the_torch_cache(
    tiny_cape_checkpoint, tmp_path, torch_cache, monkeypatch
):
    import huggingface_hub.constants

    from dynapose4d import pretrained

    asked = []

    def fake_fetch(url, target, name):  # what fetch_file leaves behind, without the network
        asked.append(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tiny_cape_checkpoint, target)

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(pretrained, "fetch_file", fake_fetch)
    run_dir = run(default_poseanything(tmp_path, "stages=[video,keypoints]", "keypoints.num_keypoints=4"))
    assert asked == [POSEANYTHING_RELEASE]  # by the pre-flight; the stage then finds it cached
    assert (torch_cache / "demo_b.pth").is_file() and (run_dir / "keypoints" / "DONE").exists()


def test_the_template_script_writes_an_editable_support_file(tmp_path):
    sample = build_sample(make_subject("biped", num_frames=1, seed=0, num_gaussians=300), resolution=64)
    from dynapose4d.media import save_png

    save_png(tmp_path / "biped.png", sample.image)
    command = [sys.executable, str(ROOT / "scripts" / "support_template.py"), str(tmp_path / "biped.png"),
               str(tmp_path / "support.json"), "--count", "5", "--size", "64"]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    assert len(load_support(tmp_path / "support.json", (64, 64)).points) == 5
    assert (tmp_path / "support.png").exists()


@pytest.mark.weights
def test_official_checkpoint_follows_a_shifted_copy_of_the_support_image():
    """The known pair: the synthetic quadruped and the same render moved 12 px right; keypoints move with it."""
    checkpoint = local_weights(poseanything_weights(os.environ.get("DYNAPOSE4D_POSEANYTHING")))
    sample = build_sample(make_subject("quadruped", num_frames=1, seed=0, num_gaussians=4000), resolution=256)
    image = sample.image[..., :3] * sample.image[..., 3:] + (1 - sample.image[..., 3:])  # on white
    shifted = torch.ones_like(image)
    shifted[:, 12:] = image[:, :-12]
    detector = CapeDetector(load_cape_checkpoint(checkpoint), image, sample.keypoints.support, sample.keypoints.bones)
    predicted = detector.detect(torch.stack([image, shifted]), batch_size=2)
    expected = torch.stack([sample.keypoints.support, sample.keypoints.support + torch.tensor([12.0, 0.0])])
    errors = (predicted - expected).norm(dim=-1)  # [2, 14] pixels
    assert (errors < 0.1 * 256).float().mean() >= 0.8  # PCK@0.1 of the image size
