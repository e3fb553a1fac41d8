"""Pipeline stages: each module has `check(cfg)`, `execute(run)` and `verify(run)` (see pipeline.stage_modules).

The training stages (static, dynamic) subclass training.TrainingStage, which owns their lifecycle.
"""
