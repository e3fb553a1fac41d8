"""TensorBoard events and losses.csv of the training stages, read back with independent readers."""

import csv
import math

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dynapose4d.pipeline import run
from dynapose4d.schedules import exponential_lr
from dynapose4d.stages import static


def read_csv(path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def events(directory) -> EventAccumulator:
    accumulator = EventAccumulator(str(directory), size_guidance={"images": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


def test_every_loss_learning_rate_and_diagnostic_is_logged_once_per_step(tiny_synthetic_config, tmp_path):
    config = tiny_synthetic_config("stages=[static]", f"run_dir={tmp_path / 'run'}", "log.images_every=3")
    log_dir = run(config) / "tb" / "static"
    rows = read_csv(log_dir / "losses.csv")
    assert [int(row["step"]) for row in rows] == [1, 2, 3, 4, 5, 6]
    for name in ("loss/ref_rgb", "loss/ref_mask", "loss/prior", "loss/total", "lr/means", "lr/sh0",
                 "train/gaussians", "train/reference_psnr"):  # fmt: skip
        assert all(math.isfinite(float(row[name])) for row in rows), name
    # The position learning rate of each step is DreamGaussian's schedule at the step it was used for.
    lr = config.static.lr
    for row in rows:
        step = int(row["step"])
        expected = exponential_lr(step - 1, lr.means, lr.means_final, config.static.iterations)
        assert float(row["lr/means"]) == pytest.approx(expected, rel=1e-6)

    # TensorBoard's own reader finds the same scalars, and images at step 1 and every 3 steps.
    logged = events(log_dir)
    total = [(event.step, event.value) for event in logged.Scalars("loss/total")]
    assert total == [(int(row["step"]), pytest.approx(float(row["loss/total"]), rel=1e-6)) for row in rows]
    images = logged.Images("reference/render_vs_input")
    assert [image.step for image in images] == [1, 3, 6]
    assert (images[0].width, images[0].height) == (2 * config.static.render_size, config.static.render_size)
    assert "views/azimuth_0_90_180_270" in logged.Tags()["images"]


def test_a_resumed_stage_replaces_the_steps_logged_after_its_checkpoint(tiny_synthetic_config, tmp_path, monkeypatch):
    config = tiny_synthetic_config("stages=[static]", f"run_dir={tmp_path / 'run'}")
    original = static.StaticStage.train_step

    def train_step(stage):  # a hard stop in step 6: steps 1-5 are logged, the checkpoint holds step 4
        if stage.step == 5:
            raise KeyboardInterrupt
        return original(stage)

    monkeypatch.setattr(static.StaticStage, "train_step", train_step)
    with pytest.raises(KeyboardInterrupt):
        run(config)
    log_dir = tmp_path / "run" / "tb" / "static"
    assert [int(row["step"]) for row in read_csv(log_dir / "losses.csv")] == [1, 2, 3, 4, 5]

    monkeypatch.setattr(static.StaticStage, "train_step", original)
    run(tiny_synthetic_config("stages=[static]", f"run_dir={tmp_path / 'run'}", "resume=true"))
    assert [int(row["step"]) for row in read_csv(log_dir / "losses.csv")] == [1, 2, 3, 4, 5, 6]
    assert [event.step for event in events(log_dir).Scalars("loss/total")] == [1, 2, 3, 4, 5, 6]


def test_the_dynamic_stage_logs_its_pal_terms_and_keypoints_on_both_frames(tiny_synthetic_config, tmp_path):
    log_dir = run(tiny_synthetic_config(f"run_dir={tmp_path / 'run'}")) / "tb" / "dynamic"
    row = read_csv(log_dir / "losses.csv")[-1]
    assert {
        "loss/ref_rgb",
        "loss/ref_mask",
        "loss/kml",
        "loss/scl",
        "loss/total",
        "lr/pose",  # the synthetic subject has joints: deformation=auto trains the skeleton
        "lr/residual_planes",
        "train/reference_psnr",
    } <= set(row)
    tags = events(log_dir).Tags()["images"]
    assert {"reference/frame_0_render_vs_driving", "keypoints/frame_1_render_vs_driving"} <= set(tags)


def test_without_tensorboard_only_the_csv_is_written(tiny_synthetic_config, tmp_path):
    config = tiny_synthetic_config("stages=[static]", f"run_dir={tmp_path / 'run'}", "log.tensorboard=false")
    log_dir = run(config) / "tb" / "static"
    assert [path.name for path in log_dir.iterdir()] == ["losses.csv"]
