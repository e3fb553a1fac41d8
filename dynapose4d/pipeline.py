"""Runs the enabled stages in order into one run directory, skipping finished ones on resume."""

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from .checkpoint import is_done
from .data.inputs import input_dir, read_inputs, write_inputs
from .errors import DynaPoseError
from .run_dir import attach_log_file, prepare_run_dir, resolve_run_dir

log = logging.getLogger(__name__)


def stage_runners() -> dict:
    # Imported on demand: a stage may pull in heavy libraries the others never need.
    from .stages import dynamic, keypoints, static, video

    return {"static": static.run, "video": video.run, "keypoints": keypoints.run, "dynamic": dynamic.run}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DynaPoseError(f"device={name} but CUDA is not available; use device=cpu or device=auto")
    return device


def run(cfg: DictConfig, overrides: list[str] | None = None) -> Path:
    """Run `cfg.stages` and return the run directory."""
    runners = stage_runners()
    unknown = [stage for stage in cfg.stages if stage not in runners]
    if unknown:
        raise DynaPoseError(f"unknown stage(s) {unknown}; available: {sorted(runners)}")
    device = resolve_device(cfg.device)
    run_dir = resolve_run_dir(cfg)
    # Read the inputs first, so bad input fails before a run directory exists.
    inputs = None if is_done(input_dir(run_dir)) else read_inputs(cfg)
    prepare_run_dir(cfg, run_dir, overrides)
    handler = attach_log_file(run_dir)
    try:
        log.info("run directory: %s (device %s)", run_dir, device)
        if inputs is not None:
            write_inputs(inputs, run_dir)
        for stage in cfg.stages:
            if is_done(run_dir / stage):
                log.info("%s: done already, skipped", stage)
                continue
            runners[stage](cfg, run_dir, device)
    finally:
        logging.getLogger("dynapose4d").removeHandler(handler)
        handler.close()
    return run_dir
