"""-m sweeps through scripts/train.py as a user runs them, and the summary over their jobs."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TINY_SYNTHETIC

from dynapose4d.sweeps import FAILED, record_failure, summarize

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def script(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPTS / name), *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


def sweep(tmp_path: Path, *overrides: str) -> Path:
    """Run a tiny synthetic sweep into tmp_path/out and return its directory."""
    result = script("train.py", "-m", *TINY_SYNTHETIC, f"output_dir={tmp_path / 'out'}", *overrides, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    (sweep_dir,) = (tmp_path / "out" / "multirun").iterdir()
    return sweep_dir


def summary_rows(sweep_dir: Path) -> list[dict]:
    result = script("summarize_sweep.py", str(sweep_dir), cwd=sweep_dir)
    assert result.returncode == 0, result.stderr
    assert all((sweep_dir / f"summary.{kind}").stat().st_size > 0 for kind in ("csv", "md", "png"))
    with open(sweep_dir / "summary.csv", newline="") as file:
        return list(csv.DictReader(file))


def test_the_pal_weight_grid_runs_every_job_into_its_own_directory_and_is_summarized(tmp_path):
    sweep_dir = sweep(tmp_path, "sweep=pal_weights")
    jobs = sorted(path.name for path in sweep_dir.iterdir() if path.is_dir())
    assert [name.split("_")[0] for name in jobs] == ["0", "1", "2", "3"]
    assert "1_dynamic.loss.kml=0,dynamic.loss.scl=10000.0" in jobs  # the swept values name the directory
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]  # Hydra wrote nothing into the cwd

    rows = summary_rows(sweep_dir)
    assert [row["job"] for row in rows] == ["0", "1", "2", "3"]
    assert {(row["dynamic.loss.kml"], row["dynamic.loss.scl"]) for row in rows} == {
        ("0", "0"), ("0", "10000.0"), ("10000.0", "0"), ("10000.0", "10000.0")
    }  # fmt: skip
    assert all(row["status"] == "done" for row in rows)
    assert all(float(row[name]) > 0 for row in rows for name in ("dynamic.heldout_psnr", "static.heldout_psnr"))
    table = (sweep_dir / "summary.md").read_text()
    assert table.count("| done |") == 4 and "Failed" not in table


def test_a_failing_job_does_not_stop_the_sweep_and_the_summary_says_why(tmp_path):
    sweep_dir = sweep(tmp_path, "dynamic.kml_mode=lift,bogus")
    (failed,) = sweep_dir.glob(f"*/{FAILED}")
    assert failed.parent.name == "1_dynamic.kml_mode=bogus"
    assert "dynamic.kml_mode=bogus" in yaml.safe_load(failed.read_text())["overrides"]

    finished, broken = summary_rows(sweep_dir)
    assert (finished["dynamic.kml_mode"], finished["status"], finished["reason"]) == ("lift", "done", "")
    assert float(finished["dynamic.heldout_psnr"]) > 0
    assert (broken["dynamic.kml_mode"], broken["status"]) == ("bogus", "failed")
    assert "invalid setting dynamic.kml_mode='bogus': must be one of lift, render" in broken["reason"]
    assert broken["dynamic.heldout_psnr"] == ""
    assert "- job 1: invalid setting dynamic.kml_mode='bogus'" in (sweep_dir / "summary.md").read_text()


def test_parallel_jobs_with_the_joblib_launcher(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="pip install -e .[launchers]")
    sweep_dir = sweep(tmp_path, "cluster=local", "hydra.launcher.n_jobs=2", "dynamic.loss.scl=0,1e4")
    rows = summary_rows(sweep_dir)
    assert [(row["job"], row["dynamic.loss.scl"], row["status"]) for row in rows] == [
        ("0", "0", "done"), ("1", "10000.0", "done")
    ]  # fmt: skip


def test_a_directory_without_jobs_is_a_clear_error(tmp_path):
    (tmp_path / "multirun.yaml").write_text("hydra: {}\n")
    result = script("summarize_sweep.py", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert "no jobs in" in result.stderr and "Traceback" not in result.stderr


def test_a_bug_in_a_job_is_recorded_with_its_traceback(tmp_path):
    try:
        raise ValueError("shapes do not match")
    except ValueError as error:
        record_failure(tmp_path / "job", error, ["seed=1"])
    record = yaml.safe_load((tmp_path / "job" / FAILED).read_text())
    assert record["reason"] == "ValueError: shapes do not match"
    assert record["overrides"] == ["seed=1"] and "raise ValueError" in record["traceback"]


def test_a_real_image_job_without_metrics_is_listed_with_its_status(tmp_path):
    run_dir = tmp_path / "0_image=cat.png"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("stages: [static]\n")
    (run_dir / ".hydra" / "config.overrides.yaml").write_text("- image=cat.png\n")
    (run_dir / "static").mkdir()
    (run_dir / "static" / "DONE").write_text("")  # finished, but no ground truth: no metrics.json
    summarize(tmp_path)
    with open(tmp_path / "summary.csv", newline="") as file:
        (row,) = csv.DictReader(file)
    assert (row["job"], row["status"], row["dynamic.heldout_psnr"]) == ("0", "done", "")
    assert "| 0 | done |" in (tmp_path / "summary.md").read_text()
