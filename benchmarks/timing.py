"""Timing helpers shared by the benchmark scripts (imported from beside them)."""

import statistics
import time
from collections.abc import Callable


def step_times(step: Callable[[], object], steps: int, warmup: int) -> list[float]:
    """Seconds of each of `steps` calls of `step`, after `warmup` untimed calls (first-call costs)."""
    times = []
    for index in range(warmup + steps):
        start = time.perf_counter()
        step()
        if index >= warmup:
            times.append(time.perf_counter() - start)
    return times


def ratio_table(times: dict[str, list[float]], baseline: str, label: str, measure: str) -> str:
    """A markdown table: each setting's median in ms and its ratio to `baseline`'s."""
    reference = statistics.median(times[baseline])
    lines = [f"| {label} | {measure} | vs {baseline} |", "|---|---|---|"]
    for name, values in times.items():
        median = statistics.median(values)
        lines.append(f"| {name} | {median * 1000:.0f} ms | {median / reference:.2f}x |")
    return "\n".join(lines)
