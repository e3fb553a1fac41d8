"""threads=: torch's CPU thread count, from the job's allotment or the setting, set once per run."""

import os

import pytest
import torch
from conftest import compose_config

from dynapose4d import threads
from dynapose4d.validation import SettingsError, validate_settings


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_slurm_allotment_wins(monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
    assert threads.available_cores() == 3


def test_hyperthreads_of_one_core_count_once(monkeypatch, tmp_path):
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    for cpu, core in enumerate([0, 1, 0, 1]):  # CPUs 2 and 3 are the siblings of 0 and 1
        topology = tmp_path / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text("0\n")
        (topology / "core_id").write_text(f"{core}\n")
    monkeypatch.setattr(threads, "CPU_TOPOLOGY", tmp_path)
    assert threads.available_cores() == 2
    monkeypatch.setattr(threads, "CPU_TOPOLOGY", tmp_path / "unreadable")  # no topology: each CPU counts
    assert threads.available_cores() == 4


def test_the_setting_reaches_torch(restore_threads, monkeypatch):
    assert threads.set_threads(1) == 1 and torch.get_num_threads() == 1
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    assert threads.set_threads("auto") == 2 and torch.get_num_threads() == 2


@pytest.mark.parametrize("value", ["0", "many", "1.5"])
def test_bad_thread_counts_are_refused(value):
    with pytest.raises(SettingsError, match="threads"):
        validate_settings(compose_config(["experiment=synthetic", f"threads={value}"]))
