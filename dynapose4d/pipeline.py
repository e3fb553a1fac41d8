"""Runs the enabled stages in order into one run directory, skipping finished ones on resume."""

import datetime
import gc
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from .checkpoint import DONE, is_done
from .data.inputs import input_dir, read_inputs, write_inputs
from .errors import DynaPoseError
from .run_dir import attach_log_file, prepare_run_dir, resolve_run_dir
from .weights import point_rembg_at, require_weights

log = logging.getLogger(__name__)
SUPERSEDED = "superseded"  # <run_dir>/superseded/<time>/<stage>: outputs made from a stage that was redone


def stage_modules() -> dict:
    """Each stage module has `run(cfg, run_dir, device)` and `check(cfg)`, and may have `outdated(cfg, run_dir)`.

    `check` validates the stage's settings before anything runs (raising DynaPoseError) and
    returns the pretrained weights the stage will load. `outdated` says why a finished stage's
    outputs no longer fit the config (None when they do); such a stage must redo itself over
    its own earlier outputs.
    """
    from .stages import dynamic, keypoints, static, video

    return {"static": static, "video": video, "keypoints": keypoints, "dynamic": dynamic}


def check_stages(cfg: DictConfig, run_dir: Path, stages, redo: list[str]) -> None:
    """Fail before any training when a stage still to run is misconfigured or lacks its weights.

    Every stage's settings are checked first, then every weight, so one message names all the
    missing models. Models found in weights_dir are used from there: their config keys in `cfg`
    are pointed at the copies, so the stages load what was checked.
    """
    pending = [
        stage for name, stage in stages.items() if name in cfg.stages and (name in redo or not is_done(run_dir / name))
    ]
    models = [model for stage in pending for model in stage.check(cfg)]
    require_weights(cfg, models)


def outdated_stages(cfg: DictConfig, run_dir: Path, stages) -> tuple[list[str], str | None]:
    """The finished stages to redo, and why: the first outdated stage and every later one made from it."""
    names = list(stages)
    for index, name in enumerate(names):
        outdated = getattr(stages[name], "outdated", None)
        reason = outdated(cfg, run_dir) if outdated is not None and is_done(run_dir / name) else None
        if reason and name not in cfg.stages:
            raise DynaPoseError(f"{reason}: add {name} to stages to redo it")
        if reason:
            return [name, *(later for later in names[index + 1 :] if (run_dir / later).exists())], reason
    return [], None


def redo_stages(run_dir: Path, redo: list[str], reason: str) -> None:
    """Unmark the first stage and move the later stages' outputs to superseded/ (kept, not deleted)."""
    first, *later = redo
    (run_dir / first / DONE).unlink()
    keep = run_dir / SUPERSEDED / datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    for name in later:
        keep.mkdir(parents=True, exist_ok=True)
        (run_dir / name).rename(keep / name)
    moved = f"; the outputs of {', '.join(later)} made from it are now in {keep}" if later else ""
    log.warning("%s: redoing %s%s", reason, ", ".join(redo), moved)


def release_memory(device: torch.device) -> None:
    """Give back what a finished stage's models held, so the next stage's models fit (24 GB GPUs)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DynaPoseError(f"device={name} but CUDA is not available; use device=cpu or device=auto")
    return device


def run(cfg: DictConfig, overrides: list[str] | None = None) -> Path:
    """Run `cfg.stages` and return the run directory."""
    stages = stage_modules()
    unknown = [stage for stage in cfg.stages if stage not in stages]
    if unknown:
        raise DynaPoseError(f"unknown stage(s) {unknown}; available: {sorted(stages)}")
    device = resolve_device(cfg.device)
    run_dir = resolve_run_dir(cfg)
    # Inputs, settings and weights first: a bad input or a missing download fails before a run directory exists.
    point_rembg_at(cfg.weights_dir)  # before the input image, which rembg may cut out
    inputs = None if is_done(input_dir(run_dir)) else read_inputs(cfg)
    redo, reason = outdated_stages(cfg, run_dir, stages)
    check_stages(cfg, run_dir, stages, redo)
    prepare_run_dir(cfg, run_dir, overrides)
    handler = attach_log_file(run_dir)
    try:
        log.info("run directory: %s (device %s)", run_dir, device)
        if inputs is not None:
            write_inputs(inputs, run_dir)
        if redo:
            redo_stages(run_dir, redo, reason)
        for stage in cfg.stages:
            if is_done(run_dir / stage):
                log.info("%s: done already, skipped", stage)
                continue
            stages[stage].run(cfg, run_dir, device)
            release_memory(device)
    finally:
        logging.getLogger("dynapose4d").removeHandler(handler)
        handler.close()
    return run_dir
