"""The run directory: where it is, making it, and what it records about the run."""

import contextlib
import datetime
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .errors import DynaPoseError

log = logging.getLogger(__name__)
CONFIG_DIR = ".hydra"
LOCK = ".lock"


def resolve_run_dir(cfg: DictConfig) -> Path:
    """`run_dir` if given; the latest run of `name` when resuming; else a new timestamped one."""
    if cfg.run_dir:
        return Path(cfg.run_dir)
    runs = Path(cfg.output_dir) / str(cfg.name)
    if cfg.resume:
        previous = sorted(path for path in runs.glob("*") if (path / CONFIG_DIR).is_dir())
        if not previous:
            raise DynaPoseError(f"resume=true but there is no earlier run in {runs}; drop resume=true to start one")
        return previous[-1]
    return runs / datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def make_run_dir(cfg: DictConfig, run_dir: Path) -> None:
    """Create (or reopen, when resuming) the run directory, checking that it is ours to write."""
    if run_dir.exists() and any(run_dir.iterdir()) and not cfg.resume:
        raise DynaPoseError(f"{run_dir} already holds a run; add resume=true to continue it, or pick another run_dir")
    try:
        (run_dir / CONFIG_DIR).mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test.{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise DynaPoseError(
            f"cannot write to the output directory {run_dir} ({error.strerror}); set output_dir=... or run_dir=..."
        ) from None


@contextlib.contextmanager
def hold_run_lock(run_dir: Path) -> Iterator[None]:
    """Hold <run_dir>/.lock while the block runs: a second process on the same run directory stops at once.

    An flock is released by the kernel when its process dies, so a killed run never leaves a stale lock.
    """
    import fcntl

    with open(run_dir / LOCK, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise DynaPoseError(
                f"{run_dir} is in use by {holder}: wait for it to finish, or pick another run_dir"
            ) from None
        lock.truncate(0)
        lock.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def record_config(cfg: DictConfig, run_dir: Path, overrides: list[str] | None = None) -> None:
    """Save the resolved config (and the command line's overrides); a resume keeps the first and warns of changes."""
    config_file = run_dir / CONFIG_DIR / "config.yaml"
    if cfg.resume and config_file.exists():
        _warn_about_changes(OmegaConf.load(config_file), cfg)
        config_file = run_dir / CONFIG_DIR / "config.resume.yaml"  # the first run's config stays as it was
    OmegaConf.save(cfg, config_file, resolve=True)
    if overrides is not None:
        OmegaConf.save(OmegaConf.create(overrides), config_file.with_name(config_file.stem + ".overrides.yaml"))


def recorded_config(run_dir: Path) -> DictConfig | None:
    """The config the run in `run_dir` last ran with (a resume's, else the first run's); None when it has none."""
    configs = [Path(run_dir) / CONFIG_DIR / name for name in ("config.resume.yaml", "config.yaml")]
    config_file = next((path for path in configs if path.exists()), None)
    return None if config_file is None else OmegaConf.load(config_file)


def _warn_about_changes(previous: DictConfig, current: DictConfig) -> None:
    before = _flatten(OmegaConf.to_container(previous, resolve=True))
    now = _flatten(OmegaConf.to_container(current, resolve=True))
    changed = sorted(key for key in before.keys() | now.keys() if before.get(key) != now.get(key) and key != "resume")
    if changed:
        log.warning("resuming with a changed config: %s", ", ".join(f"{key}={now.get(key)!r}" for key in changed))


def _flatten(tree, prefix: str = "") -> dict:
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat = {}
    for key, value in tree.items():
        flat.update(_flatten(value, f"{prefix}{key}." if isinstance(value, dict) else f"{prefix}{key}"))
    return flat


def attach_log_file(run_dir: Path) -> logging.Handler:
    """Mirror the package's log records into <run_dir>/train.log."""
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("dynapose4d").addHandler(handler)
    return handler
