"""The run directory: where it is, making it, and what it records about the run."""

import datetime
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .errors import DynaPoseError

log = logging.getLogger(__name__)
CONFIG_DIR = ".hydra"


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


def prepare_run_dir(cfg: DictConfig, run_dir: Path, overrides: list[str] | None = None) -> None:
    """Create (or reopen, when resuming) the run directory and save the resolved config there."""
    if run_dir.exists() and any(run_dir.iterdir()) and not cfg.resume:
        raise DynaPoseError(f"{run_dir} already holds a run; add resume=true to continue it, or pick another run_dir")
    try:
        (run_dir / CONFIG_DIR).mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise DynaPoseError(
            f"cannot write to the output directory {run_dir} ({error.strerror}); set output_dir=... or run_dir=..."
        ) from None
    config_file = run_dir / CONFIG_DIR / "config.yaml"
    if cfg.resume and config_file.exists():
        _warn_about_changes(OmegaConf.load(config_file), cfg)
        config_file = run_dir / CONFIG_DIR / "config.resume.yaml"  # the first run's config stays as it was
    OmegaConf.save(cfg, config_file, resolve=True)
    if overrides is not None:
        OmegaConf.save(OmegaConf.create(overrides), config_file.with_name(config_file.stem + ".overrides.yaml"))


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
