"""Runs the enabled stages in order into one run directory, skipping finished ones on resume.

Before anything is written: every setting is validated, the inputs are read, every
pretrained model is located. Then, holding the run directory's lock, each stage runs,
its outputs are verified, and only then is it marked DONE. A resume verifies the
finished stages again and redoes any whose outputs went missing since.
"""

import datetime
import gc
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from .checkpoint import is_done, mark_done, missing_outputs, unmark_done
from .data.inputs import adopt_ground_truth, ground_truth_problems, read_inputs, rembg_need, write_inputs
from .errors import DynaPoseError
from .run import SUPERSEDED, Run, resolve_device
from .run_dir import attach_log_file, hold_run_lock, make_run_dir, record_config, resolve_run_dir
from .stages import Stage, stage_order
from .threads import set_threads
from .validation import SettingsError, validate_settings
from .weights import point_rembg_at, require_weights

log = logging.getLogger(__name__)


def pipeline_stages() -> dict[str, type[Stage]]:
    """Every registered stage by name, in the order they run (stages.stage_order): see stages.Stage."""
    return {stage.name: stage for stage in stage_order()}


def check_stages(cfg: DictConfig, run_dir: Path, stages, redo: list[str], cut_out: str | None = None) -> None:
    """Fail before any training when a stage still to run lacks its weights, or rembg its model.

    One message names all the missing models; rembg's U²-Net is among them when `cut_out` (why
    the inputs need it) is given or video.mask=rembg will mask SVD's frames (video.mask=auto
    keys out the white background without it). Models found in weights_dir are used from
    there: their config keys in `cfg` are pointed at the copies, so the stages load what was checked.
    """
    pending = [name for name in stages if name in cfg.stages and (name in redo or not is_done(run_dir / name))]
    if cut_out is None and "video" in pending and cfg.video.source == "svd" and cfg.video.mask == "rembg":
        cut_out = "video.mask=rembg masks SVD's frames; or video.mask=auto keys out their white background without it"
    require_weights(cfg, [model for name in pending for model in stages[name].check(cfg)], cut_out)


def stages_to_redo(run: Run, stages) -> tuple[list[str], str | None]:
    """The finished stages to redo, and why: the first one whose outputs are broken or outdated, and every
    later one made from it."""
    names = list(stages)
    for index, name in enumerate(names):
        if not is_done(run.stage_dir(name)):
            continue
        reason = broken_outputs(run, name, stages[name]) or stages[name].outdated(run)
        if reason and name not in run.cfg.stages:
            raise DynaPoseError(f"{reason}: add {name} to stages to redo it")
        if reason:
            return [name, *(later for later in names[index + 1 :] if run.stage_dir(later).exists())], reason
    return [], None


def broken_outputs(run: Run, name: str, stage: type[Stage]) -> str | None:
    """Why a finished stage's outputs cannot be trusted any more (files gone or changed since DONE), or None."""
    problems = missing_outputs(run.stage_dir(name)) or stage.verify(run)
    return f"{name}/ is no longer whole ({'; '.join(problems[:3])})" if problems else None


def redo_stages(run: Run, redo: list[str], reason: str) -> None:
    """Unmark the first stage and move the later stages' outputs to superseded/ (kept, not deleted)."""
    first, *later = redo
    unmark_done(run.stage_dir(first))
    keep = run.dir / SUPERSEDED / datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    for name in later:
        keep.mkdir(parents=True, exist_ok=True)
        run.stage_dir(name).rename(keep / name)
    moved = f"; the outputs of {', '.join(later)} made from it are now in {keep}" if later else ""
    log.warning("%s: redoing %s%s", reason, ", ".join(redo), moved)


def run_stage(run: Run, name: str, stage: type[Stage]) -> None:
    """Execute one stage, verify what it wrote, and mark it DONE only then."""
    stage.execute(run)
    problems = stage.verify(run)
    if problems:
        raise DynaPoseError(f"{name} finished but its outputs are broken, so it is not marked done: {problems[0]}")
    mark_done(run.stage_dir(name))
    release_memory(run.device)


def release_memory(device: torch.device) -> None:
    """Give back what a finished stage's models held, so the next stage's models fit (24 GB GPUs)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def preflight(cfg: DictConfig, current: Run, stages) -> tuple[dict | None, list[str], str | None]:
    """Read the inputs and locate every model, writing nothing: (the inputs, None when written already;
    the finished stages to redo, and why).

    Inputs first, so a bad input fails before any download. An input that rembg must cut out
    waits for the models' check instead, so that rembg's missing model is named in the one
    message with the others; such an input has no ground truth, whose camera the check would need.
    """
    point_rembg_at(cfg.weights_dir)  # before rembg's model is looked for
    reading = not is_done(current.input_dir)
    cut_out = rembg_need(cfg) if reading else None
    if cut_out is not None:
        redo, reason = stages_to_redo(current, stages)
        check_stages(cfg, current.dir, stages, redo, cut_out)
    inputs = read_inputs(cfg) if reading else None
    sample = inputs.get("sample") if inputs is not None else current.ground_truth
    if sample is not None:
        problems = ground_truth_problems(cfg, sample)
        if problems:
            raise SettingsError("\n".join(problems))
        adopt_ground_truth(cfg, sample)
    if cut_out is None:
        redo, reason = stages_to_redo(current, stages)
        check_stages(cfg, current.dir, stages, redo)
    return inputs, redo, reason


def run(cfg: DictConfig, overrides: list[str] | None = None) -> Path:
    """Run `cfg.stages` and return the run directory."""
    validate_settings(cfg)
    set_threads(cfg.threads)
    stages = pipeline_stages()
    current = Run(cfg, resolve_run_dir(cfg), resolve_device(cfg.device))
    inputs, redo, reason = preflight(cfg, current, stages)
    make_run_dir(cfg, current.dir)
    with hold_run_lock(current.dir):
        record_config(cfg, current.dir, overrides)
        handler = attach_log_file(current.dir)
        try:
            log.info("run directory: %s (device %s)", current.dir, current.device)
            if inputs is not None:
                write_inputs(inputs, current)
            if redo:
                redo_stages(current, redo, reason)
            for name in [name for name in stages if name in cfg.stages]:  # the stages' own order
                if is_done(current.stage_dir(name)):
                    log.info("%s: done already, skipped", name)
                    continue
                run_stage(current, name, stages[name])
        finally:
            logging.getLogger("dynapose4d").removeHandler(handler)
            handler.close()
    return current.dir
