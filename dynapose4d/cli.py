"""Command-line shortcuts that Hydra's grammar cannot express, expanded before it parses."""

from pathlib import Path

from .errors import DynaPoseError
from .validation import MOVED

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def expand_shortcuts(overrides: list[str]) -> list[str]:
    """`video=<clip>` -> `video=file video.path=<clip>` when <clip> is not a video config (svd, file, oracle).

    `video` is both a config group and the natural name for a user's clip; Hydra alone would
    look for a config file named after the clip.
    """
    sources = {path.stem for path in (CONFIG_DIR / "video").glob("*.yaml")}
    expanded = []
    for override in overrides:
        key, _, value = override.partition("=")
        if key == "video" and value and value not in sources:
            expanded += ["video=file", f"video.path={value}"]
        else:
            expanded.append(override)
    return expanded


def reject_moved_keys(overrides: list[str]) -> None:
    """One line naming the new key for an override of a moved one (Hydra would only say it is not in the config)."""
    for override in overrides:
        key = override.lstrip("+~").partition("=")[0]
        for old, new in MOVED.items():
            if key == old or key.startswith(f"{old}.") or key.startswith(f"{old}@"):
                raise DynaPoseError(f"{override}: {old} moved to {new}")
