"""Per-step schedules of the training stages, in DreamGaussian's step convention.

DreamGaussian (and DreamGaussian4D) count steps from 1: the k-th optimisation step of an
`iterations`-long stage sees `step_ratio = k / iterations`, so the first step already
has 1/iterations and the last exactly 1. Our trainers count finished steps from 0, so a
trainer at `step` s is running DreamGaussian's step s + 1. Every schedule here takes
that 0-based `step` and converts once, so the stages cannot disagree about it.
"""

import math
from collections.abc import Sequence


def step_ratio(step: int, iterations: int) -> float:
    """DreamGaussian's progress of the step a trainer at `step` (0-based) is about to take, in (0, 1]."""
    return min(1.0, (step + 1) / max(iterations, 1))


def exponential_lr(step: int, lr_init: float, lr_final: float, iterations: int) -> float:
    """3DGS / DreamGaussian's position schedule (`get_expon_lr_func` without delay steps).

    Log-linear from `lr_init` to `lr_final` over `iterations`, evaluated at DreamGaussian's
    1-based step, so the first step is already slightly below `lr_init` and the last is
    exactly `lr_final`. Equal ends give a constant rate (its deformation networks).
    """
    if lr_init == lr_final:
        return lr_init
    t = step_ratio(step, iterations)
    return math.exp(math.log(lr_init) * (1 - t) + math.log(lr_final) * t)


def render_size(step: int, iterations: int, sizes: Sequence[Sequence[float]]) -> int:
    """The novel-view render size at `step`: `sizes` lists [start_ratio, size] pairs in order.

    DreamGaussian's [[0, 128], [0.3, 256], [0.6, 512]] renders 128² while step_ratio < 0.3,
    256² while < 0.6 and 512² after: cheap coarse views first, detail once the shape holds.
    """
    ratio = step_ratio(step, iterations)
    chosen = None
    for start, size in sizes:
        if ratio >= start:
            chosen = int(size)
    if chosen is None:
        raise ValueError(f"render size schedule {list(sizes)} has no entry for step ratio {ratio:.3f}")
    return chosen


def reference_warmup(step: int, iterations: int, enabled: bool) -> float:
    """The factor on the reference-view loss: DreamGaussian's `warmup_rgb_loss` ramps it with
    the step ratio, so the novel-view prior shapes the object before the front view dominates."""
    return step_ratio(step, iterations) if enabled else 1.0
