"""Runs the enabled stages in order into one run directory, skipping finished ones on resume.

Before anything is written: every setting is validated, the inputs are read, every
pretrained model is located. Then, holding the run directory's lock, each stage runs,
its outputs are verified, and only then is it marked DONE. A resume verifies the
finished stages again and redoes any whose outputs went missing since, and every stage
when the config names other inputs than input/ was made from.
"""

import datetime
import gc
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from .checkpoint import done_record, is_done, mark_done, missing_outputs, unmark_done
from .data.inputs import (
    adopt_ground_truth,
    ground_truth_problems,
    input_changes,
    input_fingerprint,
    read_inputs,
    rembg_need,
    write_inputs,
)
from .errors import DynaPoseError
from .run import INPUT, SUPERSEDED, Run, resolve_device
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


def stages_to_redo(run: Run, stages, inputs_changed: str | None = None) -> tuple[list[str], str | None]:
    """The finished stages to redo, and why: the first one whose outputs are broken or outdated, and every
    later one made from it; input/ and every stage made since when `inputs_changed` says how the inputs did."""
    if inputs_changed:  # every stage's outputs go, unread (run.ground_truth would cache the old sample)
        made = [name for name in stages if run.stage_dir(name).exists()]
        return [INPUT, *made], f"the inputs changed since input/ was written ({inputs_changed})"
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
    """Unmark the first stage and move the later stages' outputs to superseded/ (kept, not deleted).

    Redone inputs move there too, DONE and all (it says what they were): the new ones are written
    afresh, so that no old file stays among them (a longer clip's last frames).
    """
    first, *later = redo
    if first != INPUT:
        unmark_done(run.stage_dir(first))
    keep = run.dir / SUPERSEDED / datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    for name in redo if first == INPUT else later:
        keep.mkdir(parents=True, exist_ok=True)
        run.stage_dir(name).rename(keep / name)
    made = [f"the outputs of {', '.join(later)} made from it"] if later else []
    kept = ["the old input/", *made] if first == INPUT else made
    moved = f"; {' and '.join(kept)} {'are' if later else 'is'} now in {keep}" if kept else ""
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
    """Read the inputs and locate every model, writing nothing: (the inputs with their fingerprint, None
    when input/ holds them already; the finished stages to redo, and why).

    Inputs first, so a bad input fails before any download. An input that rembg must cut out
    waits for the models' check instead, so that rembg's missing model is named in the one
    message with the others; such an input has no ground truth, whose camera the check would need.
    Inputs other than input/ was made from are read as for a new run, and input/ is redone.
    """
    point_rembg_at(cfg.weights_dir)  # before rembg's model is looked for
    fingerprint = input_fingerprint(cfg)  # before adopt_ground_truth sets image_size to the sample's
    changed = changed_inputs(current, fingerprint)
    reading = changed is not None or not is_done(current.input_dir)
    cut_out = rembg_need(cfg) if reading else None
    if cut_out is not None:
        redo, reason = stages_to_redo(current, stages, changed)
        check_stages(cfg, current.dir, stages, redo, cut_out)
    inputs = {**read_inputs(cfg), "fingerprint": fingerprint} if reading else None
    sample = inputs.get("sample") if inputs is not None else current.ground_truth
    if sample is not None:
        problems = ground_truth_problems(cfg, sample)
        if problems:
            raise SettingsError("\n".join(problems))
        adopt_ground_truth(cfg, sample)
    if cut_out is None:
        redo, reason = stages_to_redo(current, stages, changed)
        check_stages(cfg, current.dir, stages, redo)
    return inputs, redo, reason


def changed_inputs(current: Run, fingerprint: dict) -> str | None:
    """How the config's inputs (their fingerprint) differ from those input/ was made from, in one line; None
    when they do not, or input/ is not written yet.

    A DONE without a fingerprint (written by an older version) is trusted, as it was then, and so is a
    config that names no input (fingerprint {}: a resume without image=): there is nothing to compare.
    """
    recorded = done_record(current.input_dir, "inputs") if is_done(current.input_dir) else None
    if not recorded or not fingerprint:
        return None
    return "; ".join(input_changes(recorded, fingerprint)) or None


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
            if redo:  # first: changed inputs move the old input/ aside
                redo_stages(current, redo, reason)
            if inputs is not None:
                write_inputs(inputs, current)
            for name in [name for name in stages if name in cfg.stages]:  # the stages' own order
                if is_done(current.stage_dir(name)):
                    log.info("%s: done already, skipped", name)
                    continue
                run_stage(current, name, stages[name])
        finally:
            logging.getLogger("dynapose4d").removeHandler(handler)
            handler.close()
    return current.dir
