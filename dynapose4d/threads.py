"""How many CPU threads torch may use: the physical cores this job was given, set once at start-up.

torch's default is every logical CPU of the machine, whatever share of it the job has: on a
busy 2-core machine a static step took 4.4 s instead of 0.2 s (oversubscription,
benchmarks/RESULTS.md "Thread count"). SLURM's allotment and the process's CPU affinity say
what the job may use; hyper-threads of one core add little to dense kernels, so they count once.
"""

import logging
import os
from pathlib import Path

import torch

log = logging.getLogger(__name__)
CPU_TOPOLOGY = Path("/sys/devices/system/cpu")


def available_cores() -> int:
    """Physical cores this process may run on: SLURM_CPUS_PER_TASK when set, else its affinity's cores."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK")
    if slurm and slurm.isdigit() and int(slurm) > 0:
        return int(slurm)
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    return max(1, len({_core_of(cpu) for cpu in cpus}))


def _core_of(cpu: int):
    """The physical core a logical CPU belongs to (the CPU itself where the topology is not readable)."""
    topology = CPU_TOPOLOGY / f"cpu{cpu}" / "topology"
    try:
        return (topology / "physical_package_id").read_text().strip(), (topology / "core_id").read_text().strip()
    except OSError:
        return cpu


def set_threads(setting: int | str) -> int:
    """Apply `threads=` (an int, or auto) to torch's intra-op pool; returns the count."""
    count = available_cores() if setting == "auto" else int(setting)
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
        log.debug("torch uses %d CPU threads", count)
    return count
