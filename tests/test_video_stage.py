"""The video stage: SVD (tiny random weights) with its seed candidates and frame masks, and the user's clip."""

import json
import logging

import numpy as np
import pytest
import torch
from conftest import compose_config
from PIL import Image
from test_cli import TINY_4D, assert_clean_error, train, write_rgba
from test_image import fake_rembg, rembg_offline

import dynapose4d.pretrained.svd
from dynapose4d.cli import expand_shortcuts
from dynapose4d.data.image import WHITE, key_out_background, resize_square
from dynapose4d.errors import DynaPoseError
from dynapose4d.media import load_png, load_png_frames
from dynapose4d.pipeline import run
from dynapose4d.stages.video import SHEET_CELL, SHEET_FRAMES, SHEET_LABEL, frame_masks


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
    svd = [
        f"video.model={tiny_svd_dir}",
        "video.num_frames=3",
        "video.steps=2",
        "video.height=32",
        "video.mask=background",
    ]
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


def svd_only(tmp_path, tiny_svd_dir, *extra: str):
    """The config of a run of the input and video stages alone, with tiny SVD settings."""
    image = write_rgba(tmp_path / "box.png")
    return compose_config([
        f"image={image}", f"run_dir={tmp_path / 'run'}", "stages=[video]", "image_size=48", "device=cpu",
        f"video.model={tiny_svd_dir}", "video.num_frames=2", "video.steps=2", "video.height=32",
        "video.mask=background", *extra,
    ])  # fmt: skip


def driving_frames_of(candidate) -> torch.Tensor:
    """What video/frames/ holds when `candidate` [F, H, W, 3] is the chosen one: keyed out, at image_size 48."""
    return resize_square(torch.cat([candidate, key_out_background(candidate, WHITE)], dim=-1), 48)


def refuse_to_load(*args, **kwargs):
    raise AssertionError("Stable Video Diffusion was loaded")


@pytest.fixture
def svd_calls(monkeypatch):
    """The seeds SVD generates, in order (the real model still runs)."""
    seeds = []
    generate = dynapose4d.pretrained.svd.generate_driving_video

    def spy(pipe, image, **settings):
        seeds.append(settings["seed"])
        return generate(pipe, image, **settings)

    monkeypatch.setattr(dynapose4d.pretrained.svd, "generate_driving_video", spy)
    return seeds


def test_candidates_are_written_beside_a_contact_sheet_and_the_first_drives(tmp_path, tiny_svd_dir):
    run(svd_only(tmp_path, tiny_svd_dir, "video.candidates=2", "video.seed=5"))
    candidates = tmp_path / "run" / "video" / "candidates"
    videos = {seed: load_png_frames(candidates / f"seed_{seed}" / "frames") for seed in (5, 6)}
    assert all(video.shape == (2, 32, 32, 3) for video in videos.values())
    assert all((candidates / f"seed_{seed}" / "driving.mp4").exists() for seed in (5, 6))
    assert (videos[5] - videos[6]).abs().max() > 1e-2  # another seed, another video
    sheet = load_png(candidates / "contact_sheet.png")
    assert sheet.shape == (2 * SHEET_CELL, SHEET_LABEL + SHEET_FRAMES * SHEET_CELL, 3)
    assert sheet[:SHEET_CELL, :SHEET_LABEL].min() < 0.5 and sheet[SHEET_CELL:, :SHEET_LABEL].min() < 0.5  # labels
    driving = load_png_frames(tmp_path / "run" / "video" / "frames")
    torch.testing.assert_close(driving, driving_frames_of(videos[5]), atol=1 / 255, rtol=0)


def test_resuming_with_another_seed_picks_its_candidate_and_redoes_what_came_from_the_old_one(
    tmp_path, tiny_svd_dir, svd_calls, monkeypatch
):
    run(svd_only(tmp_path, tiny_svd_dir, "video.candidates=2"))  # video.seed=null: the run's seed, 0
    run_dir = tmp_path / "run"
    assert svd_calls == [0, 1]
    (run_dir / "keypoints").mkdir()  # as if the keypoints stage had run on seed 0's video
    (run_dir / "keypoints" / "DONE").write_text("")

    load_svd = dynapose4d.pretrained.svd.load_svd
    monkeypatch.setattr(dynapose4d.pretrained.svd, "load_svd", refuse_to_load)
    run(svd_only(tmp_path, tiny_svd_dir, "resume=true", "video.seed=1"))
    assert svd_calls == [0, 1]  # seed 1's candidate was reused
    assert json.loads((run_dir / "video" / "selected.json").read_text()) == {"seed": 1}
    candidate = load_png_frames(run_dir / "video" / "candidates" / "seed_1" / "frames")
    driving = load_png_frames(run_dir / "video" / "frames")
    torch.testing.assert_close(driving, driving_frames_of(candidate), atol=1 / 255, rtol=0)
    assert not (run_dir / "keypoints").exists()  # made from the old video: moved aside, to be redone
    assert len(list((run_dir / "superseded").glob("*/keypoints/DONE"))) == 1

    run(svd_only(tmp_path, tiny_svd_dir, "resume=true"))  # no video.seed: the pick stays
    assert json.loads((run_dir / "video" / "selected.json").read_text()) == {"seed": 1}
    torch.testing.assert_close(load_png_frames(run_dir / "video" / "frames"), driving, atol=0, rtol=0)
    monkeypatch.setattr(dynapose4d.pretrained.svd, "load_svd", load_svd)

    with pytest.raises(DynaPoseError, match="holds the video of seed 1 but video.seed=0 is asked for: add video to"):
        run(svd_only(tmp_path, tiny_svd_dir, "resume=true", "video.seed=0", "stages=[static]"))

    run(svd_only(tmp_path, tiny_svd_dir, "resume=true", "video.seed=0", "video.motion_bucket_id=30"))
    assert svd_calls == [0, 1, 0]  # seed 0's candidate was made with another motion bucket: generated again


def test_frame_masks_come_from_one_rembg_session(monkeypatch):
    sessions = fake_rembg(monkeypatch, "dynapose4d.stages.video")
    video = torch.full((3, 16, 16, 3), 0.5)  # [F, H, W, 3]
    masks = frame_masks(video, "auto")
    assert masks.shape == (3, 16, 16, 1) and len(sessions) == 1 and sessions[0].images == 3
    assert masks[:, :, :8].min() == 1 and masks[:, :, 8:].max() == 0  # the session's masks, not keyed


def test_without_rembg_s_model_the_frames_are_keyed_out_with_one_warning(tmp_path, monkeypatch, caplog):
    rembg_offline(monkeypatch, tmp_path / "rembg-home")
    video = torch.ones(2, 16, 16, 3)
    video[:, 4:12, 4:12] = torch.tensor([0.9, 0.2, 0.1])  # [F, H, W, 3]: a red square on white
    with caplog.at_level(logging.WARNING):
        masks = frame_masks(video, "auto")
    torch.testing.assert_close(masks, key_out_background(video, WHITE))
    warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "keying out the white background" in warnings[0].getMessage()
    assert "u2net.onnx" in warnings[0].getMessage() and "\n" not in warnings[0].getMessage()
    with pytest.raises(DynaPoseError, match="video.mask=rembg, but rembg's model u2net.onnx is not in"):
        frame_masks(video, "rembg")


def test_unknown_mask_method_and_no_candidates_are_refused_before_the_run(tmp_path, tiny_svd_dir):
    refused = [("video.mask=alpha", "video.mask='alpha': must be one of auto, rembg, background"),
               ("video.candidates=0", "video.candidates=0: must be an integer >= 1")]  # fmt: skip
    for setting, message in refused:
        with pytest.raises(DynaPoseError, match=message):
            run(svd_only(tmp_path, tiny_svd_dir, setting))
    assert not (tmp_path / "run").exists()
