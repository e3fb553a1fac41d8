"""benchmarks/gpu_check.py on the CPU: its no-CUDA exit, its report from a made-up timing table,
and every section run with tiny models (so the GPU run does not meet its first bug on the device)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402


def fake_results() -> dict:
    """Made-up figures: a static stage of 100 steps in two schedule segments, one stage over 24 GiB."""
    static = {"iterations": 100, "rows": [
        {"novel_view_size": 128, "from_ratio": 0.0, "step_s": 0.5, "peak_gib": 10.0},
        {"novel_view_size": 512, "from_ratio": 0.6, "step_s": 1.0, "peak_gib": 20.0}]}  # fmt: skip
    dynamic = {"iterations": 10, "frames": 14, "rows": [
        {"novel_view_size": 256, "from_ratio": 0.0, "step_s": 3.0, "peak_gib": 30.0}]}  # fmt: skip
    return {
        "device": "Made-up GPU",
        "torch": "2.14.1",
        "size": "full",
        "sections": {
            "rasteriser": {"rows": [{"gaussians": 16000, "pixels": 256, "torch_s": 0.02, "gsplat_s": 0.002,
                                     "image_max_abs_error": 1e-6, "grad_max_abs_error": {"means": 2e-5}}]},
            "static_zero123": static,
            "video_offload": {"cpu_offload": True, "seconds": 60.0, "peak_gib": 9.0},
            "keypoints": {"variant": "base", "frames": 14, "seconds": 2.0, "peak_gib": 3.0},
            "dynamic_hexplane": dynamic,
        },
    }  # fmt: skip


def test_without_cuda_it_says_so_and_exits_0():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the script would measure")
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("no CUDA")


def test_the_projection_weighs_each_schedule_segment_by_its_share_of_the_iterations():
    projection = gpu_check.project(fake_results())
    # static: 60 steps at 0.5 s + 40 at 1.0 s = 70 s; dynamic: 10 x 3 s; video 60 s; keypoints 2 s.
    assert projection["seconds"]["static (zero123)"] == pytest.approx(70.0)
    assert projection["seconds"]["dynamic (hexplane)"] == pytest.approx(30.0)
    assert projection["total_s"] == pytest.approx(70 + 60 + 2 + 30)
    assert projection["peak_gib"]["static_zero123"] == 20.0
    assert projection["fits_24gb"] == {"static_zero123": True, "video_offload": True, "keypoints": True,
                                       "dynamic_hexplane": False}  # fmt: skip


def test_the_report_has_one_row_per_measurement_and_marks_what_does_not_fit():
    results = fake_results()
    report = gpu_check.markdown_report({**results, "projection": gpu_check.project(results)})
    assert report.startswith("Device: Made-up GPU")
    assert "| 16000 | 256² | 20.0 | 2.0 | 1e-06 | 2e-05 |" in report
    assert "| static_zero123 | novel views 512² | 1.000 | 20 | yes |" in report
    assert "| dynamic_hexplane | novel views 256² | 3.000 | 30 | **no** |" in report
    assert "| video_offload | cpu offload | 60.000 | 9 | yes |" in report
    assert "Projected `image=cat.png` run: 2.7 min" in report


def test_every_section_runs_with_tiny_models_on_the_cpu(tmp_path):
    out = tmp_path / "gpu_results.json"
    command = [sys.executable, str(SCRIPT), "--size", "tiny", "--allow-cpu", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads(out.read_text())
    failed = {name: section["error"] for name, section in results["sections"].items() if "error" in section}
    assert not failed
    assert len(results["sections"]) == 8 and results["projection"]["total_s"] > 0
    assert out.with_suffix(".md").read_text().startswith("Device: ")
