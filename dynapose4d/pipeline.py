"""Runs the enabled stages in order into one run directory, skipping finished ones on resume."""

import gc
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from .checkpoint import is_done
from .data.inputs import input_dir, read_inputs, write_inputs
from .errors import DynaPoseError
from .pretrained import resolve_pretrained
from .run_dir import attach_log_file, prepare_run_dir, resolve_run_dir

log = logging.getLogger(__name__)


def stage_modules() -> dict:
    """Each stage module has `run(cfg, run_dir, device)` and `check(cfg)`.

    `check` validates the stage's settings before anything runs (raising DynaPoseError) and
    returns the pretrained weights the stage will load.
    """
    from .stages import dynamic, keypoints, static, video

    return {"static": static, "video": video, "keypoints": keypoints, "dynamic": dynamic}


def check_stages(cfg: DictConfig, run_dir: Path, stages) -> None:
    """Fail before any training when a stage still to run is misconfigured or lacks its weights."""
    for name, stage in stages.items():
        if name in cfg.stages and not is_done(run_dir / name):
            for model in stage.check(cfg):
                resolve_pretrained(model)


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
    inputs = None if is_done(input_dir(run_dir)) else read_inputs(cfg)
    check_stages(cfg, run_dir, stages)
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
            stages[stage].run(cfg, run_dir, device)
            release_memory(device)
    finally:
        logging.getLogger("dynapose4d").removeHandler(handler)
        handler.close()
    return run_dir
