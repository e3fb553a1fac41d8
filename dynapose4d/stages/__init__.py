"""Pipeline stages, in the order they run (STAGE_ORDER, the one place it is written).

A stage is a module of this package with `check(cfg)`, `execute(run)` and `verify(run)`, and
optionally `outdated(run)` (see pipeline.stage_modules). The training stages (static,
dynamic) subclass training.TrainingStage, which owns their lifecycle; their loss terms are
in terms/.
"""

STAGE_ORDER = ("static", "video", "keypoints", "dynamic")
