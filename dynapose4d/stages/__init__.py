"""Pipeline stages: each is a `Stage` registered in STAGES by the module that defines it.

    @STAGES.register("keypoints", schema=SETTINGS)    # the rules for its config group, `keypoints.*`
    class KeypointsStage(Stage):
        name = "keypoints"
        after = ("video",)                            # the stages whose outputs it reads

A stage runs after every stage named in its `after` (`stage_order`), and has a config group
of the same name. The training stages (static, dynamic) subclass training.TrainingStage,
which owns their loop; their loss terms are in terms/.
"""

from abc import ABC, abstractmethod
from typing import ClassVar

from omegaconf import DictConfig

from ..errors import DynaPoseError
from ..pretrained import PretrainedModel
from ..registry import Registry
from ..run import Run

# name -> the stage class and the schema of its settings; every module of this package is imported on first use
STAGES = Registry("stage", __name__)


class Stage(ABC):
    """What the pipeline calls on a stage (pipeline.py); all on the class, none needs an instance."""

    name: ClassVar[str]  # its directory in the run, and its config group
    after: ClassVar[tuple[str, ...]] = ()  # the stages whose outputs it reads: it runs after them

    @classmethod
    @abstractmethod
    def check(cls, cfg: DictConfig) -> list[PretrainedModel]:
        """The pretrained models it will load with `cfg` (validated already), located before anything runs."""

    @classmethod
    @abstractmethod
    def execute(cls, run: Run) -> None:
        """Write its outputs into run.stage_dir(name); the pipeline marks it DONE once `verify` passes."""

    @classmethod
    @abstractmethod
    def verify(cls, run: Run) -> list[str]:
        """What is wrong with its outputs ([] when they are whole), after `execute` and on every resume."""

    @classmethod
    def outdated(cls, run: Run) -> str | None:
        """Why its finished outputs no longer fit the config (the pipeline redoes it), or None when they do."""
        return None


def stage_order() -> list[type[Stage]]:
    """Every registered stage, each after those in its `after`; stages free to go in either order go by name."""
    entries = {entry.name: entry.component for entry in STAGES}
    for name, stage in entries.items():
        if stage.name != name:
            raise DynaPoseError(f"stage {stage.name!r} is registered as {name!r}: one name for both")
        unknown = [before for before in stage.after if before not in entries]
        if unknown:
            raise DynaPoseError(f"stage {name} runs after {', '.join(unknown)}, which no module registers")
    ordered: list[type[Stage]] = []
    placed: set[str] = set()
    while len(ordered) < len(entries):
        ready = [name for name, stage in entries.items() if name not in placed and placed.issuperset(stage.after)]
        if not ready:
            left = ", ".join(name for name in entries if name not in placed)
            raise DynaPoseError(f"the stages {left} each run after another of them: their `after` makes a circle")
        placed.add(ready[0])
        ordered.append(entries[ready[0]])
    return ordered
