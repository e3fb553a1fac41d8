"""The run lifecycle: nothing broken is ever marked DONE, and a resume repairs what went missing."""

import json
import math
import os
import signal

import pytest
import torch

from dynapose4d.checkpoint import DONE, load_checkpoint
from dynapose4d.errors import DynaPoseError
from dynapose4d.pipeline import run
from dynapose4d.run import Run
from dynapose4d.run_dir import hold_run_lock
from dynapose4d.stages import static
from dynapose4d.stages.training import Stopped


@pytest.fixture
def static_config(tiny_synthetic_config, tmp_path):
    """The tiny synthetic run, static stage only, in tmp_path/run."""
    return lambda *extra: tiny_synthetic_config("stages=[static]", f"run_dir={tmp_path / 'run'}", *extra)


def after_step(monkeypatch, stage_class, step: int, action) -> None:
    """Call `action(stage)` right after `stage_class` finishes the step that takes it to `step`."""
    original = stage_class.train_step

    def train_step(stage):
        values = original(stage)
        return action(stage, values) or values if stage.step == step else values

    monkeypatch.setattr(stage_class, "train_step", train_step)


def test_a_nan_loss_stops_the_stage_with_the_step_and_the_loss_named(static_config, monkeypatch, tmp_path):
    after_step(monkeypatch, static.StaticStage, 3, lambda stage, values: {**values, "ref_mask": math.nan})
    with pytest.raises(DynaPoseError, match=r"static diverged at step 3: loss ref_mask is nan; nothing from this step"):
        run(static_config())
    stage_dir = tmp_path / "run" / "static"
    assert not (stage_dir / DONE).exists() and not (stage_dir / "model.ply").exists()
    kept = load_checkpoint(stage_dir / "checkpoint.pt")  # the periodic one of step 2, finite
    assert kept["step"] == 2 and all(value.isfinite().all() for value in kept["model"].values())


def test_a_non_finite_parameter_stops_the_stage_before_any_checkpoint_holds_it(static_config, monkeypatch, tmp_path):
    def poison(stage, values):
        with torch.no_grad():
            stage.model.params["scales"][0, 0] = math.inf

    after_step(monkeypatch, static.StaticStage, 4, poison)  # 4: a checkpoint step (checkpoint_every=2)
    with pytest.raises(DynaPoseError, match="static diverged at step 4: parameter scales is not finite"):
        run(static_config())
    assert load_checkpoint(tmp_path / "run" / "static" / "checkpoint.pt")["step"] == 2


def test_sigterm_saves_the_finished_step_and_stops_without_done(static_config, monkeypatch, tmp_path):
    original = static.StaticStage.train_step

    def train_step(stage):  # SIGTERM arrives during the second step
        if stage.step == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(stage)

    monkeypatch.setattr(static.StaticStage, "train_step", train_step)
    with pytest.raises(Stopped) as stopped:
        run(static_config())
    assert stopped.value.signum == signal.SIGTERM
    stage_dir = tmp_path / "run" / "static"
    assert load_checkpoint(stage_dir / "checkpoint.pt")["step"] == 2 and not (stage_dir / DONE).exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is the stage's only while it trains


def test_a_resume_trains_with_the_learning_rates_the_config_sets_now(static_config, ctrl_c_at, tmp_path):
    with ctrl_c_at(static.StaticStage, step=2):
        run(static_config())
    config = static_config("resume=true", "static.lr.sh0=0.123")
    stage = static.StaticStage.from_run(Run(config, tmp_path / "run", torch.device("cpu")))
    assert stage.step == 3  # the optimizer state was restored ...
    assert stage.optimizers["sh0"].state_dict()["state"]  # ... with its moments
    assert stage.optimizers["sh0"].param_groups[0]["lr"] == 0.123  # ... but not its old learning rate


def test_done_lists_every_output_and_a_resume_redoes_a_stage_whose_files_went_missing(tiny_synthetic_config, tmp_path):
    config = tiny_synthetic_config("stages=[static,video]", f"run_dir={tmp_path / 'run'}")
    run_dir = run(config)
    listed = json.loads((run_dir / "video" / DONE).read_text())["files"]
    assert {"frames/000.png", "frames/001.png", "driving.mp4"} <= set(listed)
    assert listed["frames/001.png"] == (run_dir / "video" / "frames" / "001.png").stat().st_size

    (run_dir / "video" / "frames" / "001.png").unlink()  # a driving frame deleted by hand
    (run_dir / "static" / "model.ply").unlink()
    run(tiny_synthetic_config("stages=[static,video]", f"run_dir={run_dir}", "resume=true"))
    assert (run_dir / "static" / "model.ply").exists() and (run_dir / "video" / "frames" / "001.png").exists()
    superseded = list((run_dir / "superseded").glob("*/video/frames/000.png"))
    assert len(superseded) == 1  # the video made from the redone static stage is kept aside, not trusted


def test_outputs_that_fail_verification_are_never_marked_done(static_config, monkeypatch, tmp_path):
    monkeypatch.setattr(static, "write_static_outputs", lambda run, model: None)  # a stage that forgets its outputs
    with pytest.raises(DynaPoseError, match="static finished but its outputs are broken.*model.ply is missing"):
        run(static_config())
    assert not (tmp_path / "run" / "static" / DONE).exists()


def test_a_second_process_on_the_same_run_directory_stops_at_once(static_config, tmp_path):
    run_dir = run(static_config())
    with hold_run_lock(run_dir), pytest.raises(DynaPoseError, match=f"{run_dir} is in use by process {os.getpid()}"):
        run(static_config("resume=true"))


def test_a_damaged_checkpoint_is_named_with_what_to_do(static_config, ctrl_c_at, tmp_path):
    with ctrl_c_at(static.StaticStage, step=2):
        run(static_config())
    checkpoint = tmp_path / "run" / "static" / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:200])  # a copy cut short
    with pytest.raises(DynaPoseError, match=f"cannot read the checkpoint {checkpoint} .*delete it to restart"):
        run(static_config("resume=true"))
