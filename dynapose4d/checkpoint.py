"""Atomic checkpoints and stage markers: an interrupted run never leaves a broken file."""

import os
from pathlib import Path

import torch

DONE = "DONE"


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """torch.save to a temporary file in the same directory, then rename over `path`."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)  # atomic on POSIX: readers see the old or the new file


def load_checkpoint(path: str | os.PathLike) -> dict:
    # Our own checkpoints hold RNG states and optimizer dicts, which weights_only allows.
    return torch.load(path, map_location="cpu", weights_only=True)


def is_done(stage_dir: Path) -> bool:
    return (stage_dir / DONE).exists()


def mark_done(stage_dir: Path) -> None:
    (stage_dir / DONE).write_text("")
