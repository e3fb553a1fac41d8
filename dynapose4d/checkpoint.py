"""Atomic checkpoints and verified stage markers: an interrupted run never leaves a broken file.

A stage's DONE file lists every file the stage wrote, with its size. It is written only
after the stage's outputs were verified, and a resume checks it again: a file deleted or
cut short since means the stage is redone, not trusted. input/'s also says what the inputs
were, so that a resume can tell when the config names others.
"""

import json
import os
from pathlib import Path

import torch

from .errors import DynaPoseError, first_line

DONE = "DONE"


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """torch.save to a temporary file in the same directory, then rename over `path`."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # per process: two writers never share one
    torch.save(state, temporary)
    os.replace(temporary, path)  # atomic on POSIX: readers see the old or the new file


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Our own checkpoint (RNG states and optimizer dicts, which weights_only allows); a damaged one is named."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # torch's zip reader or unpickler on a truncated or foreign file
        raise DynaPoseError(
            f"cannot read the checkpoint {path} ({first_line(error)}): "
            "delete it to restart that stage from its first step"
        ) from None


def is_done(stage_dir: Path) -> bool:
    return (stage_dir / DONE).exists()


def mark_done(stage_dir: Path, record: dict | None = None) -> None:
    """DONE, listing every file under `stage_dir` with its size (JSON), written last and atomically.

    `record`'s entries are stored beside the list (input/'s "inputs": what it was made from; done_record).
    """
    files = {
        str(path.relative_to(stage_dir)): path.stat().st_size
        for path in sorted(stage_dir.rglob("*"))
        if path.is_file() and path.name != DONE and not path.name.endswith(".tmp")
    }
    temporary = stage_dir / f".{DONE}.tmp"
    temporary.write_text(json.dumps({"files": files, **(record or {})}, indent=1) + "\n")
    os.replace(temporary, stage_dir / DONE)


def done_record(stage_dir: Path, key: str):
    """The entry `key` mark_done stored in DONE beside the files; None without one (a DONE of an older run)."""
    try:
        entries = json.loads((stage_dir / DONE).read_text())
    except json.JSONDecodeError:  # an empty DONE, as the oldest runs wrote
        return None
    return entries.get(key) if isinstance(entries, dict) else None


def unmark_done(stage_dir: Path) -> None:
    (stage_dir / DONE).unlink(missing_ok=True)


def missing_outputs(stage_dir: Path) -> list[str]:
    """The files DONE lists that are gone or changed size since; [] for DONE files of older runs (no list)."""
    text = (stage_dir / DONE).read_text()
    try:
        files = json.loads(text)["files"] if text.strip() else {}
    except (json.JSONDecodeError, KeyError, TypeError):
        return [f"{stage_dir / DONE} is unreadable"]
    problems = []
    for name, size in files.items():
        path = stage_dir / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif path.stat().st_size != size:
            problems.append(f"{name} changed size ({path.stat().st_size} bytes, {size} when written)")
    return problems


def non_finite(tensors: dict, where: str) -> list[str]:
    """One problem per tensor in `tensors` (nested dicts too) holding NaN or inf, named with `where`."""
    problems = []
    for key, value in tensors.items():
        if isinstance(value, dict):
            problems += non_finite(value, f"{where} {key}")
        elif isinstance(value, torch.Tensor) and value.is_floating_point() and not value.isfinite().all():
            problems.append(f"{where}: {key} is not finite")
    return problems
