"""scripts/eval.py and its runner: reports on disk, and the same numbers whichever way a run is scored."""

import csv
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from conftest import CONFIG_DIR, TINY_SYNTHETIC, compose_config
from hydra import compose, initialize_config_dir

from dynapose4d.data.sample import load_sample
from dynapose4d.eval.layouts import save_view_frames
from dynapose4d.eval.runner import evaluate
from dynapose4d.pipeline import run

EVAL = Path(__file__).resolve().parents[1] / "scripts" / "eval.py"


def eval_config(*overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="eval", overrides=["local_only=true", "lpips_net=alex", *overrides])


def test_renders_in_the_benchmark_layout_are_scored_into_a_report(tmp_path):
    generator = torch.Generator().manual_seed(0)
    for name in ("bird", "cat"):
        truth = torch.rand(4, 3, 16, 16, 3, generator=generator)
        save_view_frames(tmp_path / "gt" / name, truth)
        noisy = (truth + 0.05 * torch.randn(truth.shape, generator=generator)).clamp(0, 1)
        save_view_frames(tmp_path / "pred" / name, noisy)
    command = [sys.executable, str(EVAL), f"gt_root={tmp_path / 'gt'}", f"pred_root={tmp_path / 'pred'}",
               f"output_dir={tmp_path / 'report'}", "size=32", "local_only=true"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = tmp_path / "report"
    metrics = json.loads((report / "metrics.json").read_text())
    assert set(metrics["objects"]) == {"bird", "cat"}
    assert 20 < metrics["summary"]["psnr"]["mean"] < 40 and 0 < metrics["summary"]["ssim"]["mean"] < 1
    assert "skipped" in metrics["summary"]["fvd"] and "fvd_i3d" in metrics["summary"]["fvd"]["skipped"]
    rows = list(csv.DictReader((report / "scores.csv").open()))
    assert {(row["object"], row["metric"]) for row in rows} >= {("bird", "psnr"), ("cat", "ssim")}
    assert len([row for row in rows if row["metric"] == "psnr"]) == 8  # 2 objects x 4 views
    table = (report / "table.md").read_text()
    assert "| bird |" in table and "**mean**" in table and "Skipped:" in table
    assert (report / "scores.png").stat().st_size > 0
    assert "| cat |" in result.stdout  # the table is printed too


def test_a_synthetic_run_scores_the_same_rendered_directly_or_through_the_consistent4d_layout(tmp_path):
    run_dir = run(compose_config([*TINY_SYNTHETIC, f"output_dir={tmp_path / 'outputs'}"]))
    report = evaluate(eval_config("benchmark=ground_truth", f"run_dir={run_dir}"))
    synthetic = json.loads((report / "metrics.json").read_text())

    # The run's ground truth written as a one-object Consistent4D benchmark, the run as that object's run.
    sample = load_sample(run_dir / "input" / "ground_truth")
    renders = sample.eval_renders.transpose(0, 1)  # [V, T, H, W, 4]
    save_view_frames(tmp_path / "eval_gt" / "quadruped", renders[..., :3] * renders[..., 3:] + 1 - renders[..., 3:])
    shutil.copytree(run_dir, tmp_path / "runs" / "quadruped" / run_dir.name)
    azimuths = "[" + ",".join(str(view["azimuth"]) for view in sample.eval_views) + "]"
    consistent4d = eval_config(
        f"gt_root={tmp_path / 'eval_gt'}", f"runs_root={tmp_path / 'runs'}", f"size={sample.image.shape[0]}",
        f"views.azimuths={azimuths}",
    )  # fmt: skip
    through_layout = json.loads((evaluate(consistent4d) / "metrics.json").read_text())
    for metric in ("psnr", "ssim"):
        direct, layout = synthetic["summary"][metric]["mean"], through_layout["summary"][metric]["mean"]
        assert math.isclose(direct, layout, rel_tol=1e-3), (metric, direct, layout)

    # The training run's own held-out numbers are the same scores: one run, one PSNR (renders from the
    # model in memory there, from the written PLY files here, so equal to float rounding).
    trained = json.loads((run_dir / "metrics.json").read_text())["dynamic"]
    for metric in ("psnr", "ssim"):
        assert math.isclose(trained[f"heldout_{metric}"], synthetic["summary"][metric]["mean"], rel_tol=1e-4)
