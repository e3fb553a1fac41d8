"""benchmarks/ablation_summary.py on a hand-made results file (pooled, per-kind and per-sample rows, Δ vs Ref
paired by sample and seed, a truncated last line), and benchmarks/pal_ablation.py's job selection and resume
with the pipeline replaced by a fake that writes what a finished run would."""

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import pal_ablation  # noqa: E402
from ablation_summary import (  # noqa: E402
    append_result,
    done_keys,
    format_table,
    mean_curve,
    read_results,
    summary_markdown,
    summary_rows,
    write_summary,
)


def record(sample: str, kind: str, network: str, variant: str, psnr: float, lpips=0.2, ceiling=30.0) -> dict:
    """A result line: object-box PSNR 2 dB below the held-out PSNR, reference PSNR 10 dB above, frames 0 and 1."""
    return {
        "sample": sample, "kind": kind, "seed": 0, "network": network, "variant": variant,
        "heldout_psnr": psnr, "heldout_psnr_object": psnr - 2, "heldout_ssim": 0.9, "reference_psnr": psnr + 10,
        "heldout_lpips": lpips, "per_frame": {"heldout_psnr": [psnr - 1, psnr + 1]}, "frames": [0, 1],
        "static_heldout_psnr": ceiling, "static_heldout_psnr_object": ceiling - 2, "seconds": 1.0,
    }  # fmt: skip


def fake_results() -> list[dict]:
    """hexplane: Ref for both quadrupeds but not for biped-0, Ref+PAL for all three; sparse_control: no Ref."""
    return [
        record("quadruped-0", "quadruped", "hexplane", "Ref", 20.0),
        record("quadruped-1", "quadruped", "hexplane", "Ref", 22.0),
        record("quadruped-0", "quadruped", "hexplane", "Ref+PAL", 21.0, lpips=0.1),
        record("quadruped-1", "quadruped", "hexplane", "Ref+PAL", 24.0, lpips="no LPIPS weights"),
        record("biped-0", "biped", "hexplane", "Ref+PAL", 30.0, lpips=0.3, ceiling=35.0),
        record("quadruped-0", "quadruped", "sparse_control", "Ref+PAL", 19.0, lpips="no LPIPS weights"),
    ]


def test_the_3d_keypoint_error_is_averaged_only_where_every_run_has_it():
    runs = fake_results()[:2]  # hexplane Ref on both quadrupeds
    runs[0]["keypoint_error_3d"], runs[1]["keypoint_error_3d"] = 0.1, 0.3
    assert row(summary_rows(runs), "hexplane", "Ref")["keypoint_error_3d"] == pytest.approx(0.2)
    assert "| 0.2000 |" in format_table(summary_rows(runs))
    del runs[1]["keypoint_error_3d"]  # a sample without 3D keypoints: no mean over a part of the runs
    assert row(summary_rows(runs), "hexplane", "Ref")["keypoint_error_3d"] is None


@pytest.fixture
def results_file(tmp_path) -> Path:
    path = tmp_path / "results.jsonl"
    for line in fake_results():
        append_result(path, line)
    return path


def row(rows: list[dict], network: str, variant: str, group: str = "all") -> dict:
    (found,) = [r for r in rows if (r["group"], r["network"], r["variant"]) == (group, network, variant)]
    return found


def test_pooled_rows_pair_delta_by_sample_and_seed():
    rows = summary_rows(fake_results())
    pal = row(rows, "hexplane", "Ref+PAL")
    assert pal["heldout_psnr"] == pytest.approx((25.0, 21**0.5))  # 21, 24, 30: mean 25, stdev sqrt(21)
    assert pal["heldout_psnr_object"][0] == pytest.approx(23.0)
    assert pal["delta"] == pytest.approx((1.5, 0.5**0.5))  # +1, +2: biped-0 has no Ref and is left out
    assert (pal["delta_pairs"], pal["runs"]) == (2, 3)
    assert pal["heldout_lpips"] == pytest.approx(0.2)  # 0.1 and 0.3; the string is ignored
    assert pal["static_heldout_psnr"] == pytest.approx(95 / 3)  # 30, 30, 35
    assert pal["gap_to_ceiling"] == pytest.approx(20 / 3)  # 9, 6, 5
    assert pal["reference_psnr"] == pytest.approx(35.0)
    assert row(rows, "hexplane", "Ref")["delta"] == (0.0, 0.0)
    sparse = row(rows, "sparse_control", "Ref+PAL")
    assert sparse["delta"] is None and sparse["heldout_lpips"] is None
    assert [(r["network"], r["variant"]) for r in rows] == [
        ("hexplane", "Ref"), ("hexplane", "Ref+PAL"), ("sparse_control", "Ref+PAL")]  # fmt: skip


def test_per_kind_and_per_sample_rows():
    by_kind = summary_rows(fake_results(), by="kind")
    assert row(by_kind, "hexplane", "Ref+PAL", "quadruped")["delta"] == pytest.approx((1.5, 0.5**0.5))
    assert row(by_kind, "hexplane", "Ref+PAL", "biped")["delta"] is None
    by_sample = summary_rows(fake_results(), by="sample")
    assert row(by_sample, "hexplane", "Ref+PAL", "quadruped-1")["delta"] == (2.0, 0.0)
    assert {r["group"] for r in by_sample} == {"quadruped-0", "quadruped-1", "biped-0"}


def test_another_baseline_pairs_with_its_own_runs_and_leads_the_rows():
    rows = summary_rows(fake_results(), baseline="Ref+PAL")
    ref = row(rows, "hexplane", "Ref")
    assert ref["delta"] == pytest.approx((-1.5, 0.5**0.5))  # quadruped-0: 20 - 21, quadruped-1: 22 - 24
    assert [r["variant"] for r in rows if r["network"] == "hexplane"] == ["Ref+PAL", "Ref"]
    assert "| Δ vs Ref+PAL (dB) |" in summary_markdown(fake_results(), baseline="Ref+PAL")


def test_markdown_table_shows_means_deltas_and_dashes():
    table = summary_markdown(fake_results())
    pooled = [
        "| hexplane | Ref+PAL | 25.00 ± 4.58 | 23.00 ± 4.58 | +1.50 ± 0.71 (2 paired) | 35.00 | 0.9000 | 0.2000 "
        "| – | 31.67 | 6.67 | 3 |",  # no 3D keypoints in these records
        "| sparse_control | Ref+PAL | 19.00 ± 0.00 | 17.00 ± 0.00 | – | 29.00 | 0.9000 | – | – | 30.00 | 11.00 | 1 |",
    ]
    assert all(line in table for line in pooled)
    assert "| quadruped | hexplane | Ref+PAL | 22.50 ± 2.12 | 20.50 ± 2.12 | +1.50 ± 0.71 | " in table
    assert "| biped | hexplane | Ref+PAL | 30.00 ± 0.00 | 28.00 ± 0.00 | – | " in table
    assert "| biped-0 | hexplane | Ref+PAL |" in table
    assert table.index("## Pooled") < table.index("## Per kind") < table.index("## Per sample")


def test_truncated_last_line_is_ignored_with_a_warning(results_file):
    with open(results_file, "a") as file:
        file.write('{"sample": "quadruped-2", "kind": "quadr')  # killed mid-write
    with pytest.warns(UserWarning, match=r"results.jsonl:7 is not a whole JSON line"):
        assert read_results(results_file) == fake_results()


def test_appending_keeps_earlier_lines_even_after_a_truncated_one(results_file):
    before = results_file.read_text()
    with open(results_file, "a") as file:
        file.write('{"sample": "quadr')
    extra = record("biped-1", "biped", "hexplane", "Ref", 28.0)
    append_result(results_file, extra)
    assert results_file.read_text().startswith(before)
    with pytest.warns(UserWarning, match="results.jsonl:7"):
        assert read_results(results_file) == [*fake_results(), extra]


def test_recorded_runs_are_done_and_not_pending(results_file):
    done = done_keys(read_results(results_file))
    assert ("quadruped-0", 0, "hexplane", "Ref") in done
    job = pal_ablation.Job(pal_ablation.Sample(Path("/samples/b"), "biped-0", "biped"), seed=0)
    pending = pal_ablation.pending_runs(job, ["hexplane", "sparse_control"], ["Ref", "Ref+PAL"], done)
    assert pending == [("hexplane", "Ref"), ("sparse_control", "Ref"), ("sparse_control", "Ref+PAL")]


def test_plot_and_table_are_written(tmp_path):
    table = write_summary(fake_results(), tmp_path)
    assert (tmp_path / "table.md").read_text() == table
    assert (tmp_path / "psnr_over_frames.png").stat().st_size > 1000
    shorter = {"frames": [0, 2], "per_frame": {"heldout_psnr": [30.0, 31.0]}}
    frames, psnr = mean_curve([record("a", "a", "n", "v", 20.0), shorter])
    assert (frames, psnr) == ([0, 1, 2], [24.5, 21.0, 31.0])  # frame 1 only in the first run


class FakePipeline:
    """Stands in for pal_ablation.train: marks the asked stages DONE and writes metrics.json like a real run.
    `interrupt` names a variant's run dir whose next dynamic stage stops halfway (KeyboardInterrupt)."""

    def __init__(self):
        self.calls: list[dict] = []
        self.interrupt: str | None = None

    def __call__(self, overrides: list[str]) -> None:
        settings = dict(override.split("=", 1) for override in overrides)
        run_dir = Path(settings["run_dir"].strip("'"))
        stages = settings["stages"].strip("[]").split(",")
        self.calls.append({**settings, "copied": (run_dir / "keypoints" / "DONE").exists(), "stages": stages})
        for stage in stages:
            if not (run_dir / stage / "DONE").exists():
                self.finish(run_dir, stage)

    def finish(self, run_dir: Path, stage: str) -> None:
        (run_dir / stage).mkdir(parents=True, exist_ok=True)
        if stage == "dynamic" and run_dir.name == self.interrupt:
            self.interrupt = None
            (run_dir / stage / "checkpoint.pt").write_text("halfway")
            raise KeyboardInterrupt
        (run_dir / stage / "DONE").write_text("")
        if stage == "dynamic":
            section = {"heldout_psnr": 25.0, "heldout_psnr_object": 24.0, "heldout_ssim": 0.9, "reference_psnr": 35.0,
                       "heldout_lpips": 0.1, "per_frame": {"heldout_psnr": [24.0, 26.0]}, "frames": [0, 1]}  # fmt: skip
            metrics = {"static": {**section, "heldout_psnr": 30.0, "heldout_psnr_object": 29.0}, "dynamic": section}
            (run_dir / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture
def pipeline(monkeypatch) -> FakePipeline:
    fake = FakePipeline()
    monkeypatch.setattr(pal_ablation, "train", fake)
    monkeypatch.setattr(pal_ablation, "compose_config", lambda overrides: None)  # no ground_truth experiment needed
    return fake


def make_sample(directory: Path, **labels) -> Path:
    directory.mkdir(parents=True)
    (directory / "sample.json").write_text(json.dumps({"format": "dynapose4d-sample/1", "num_frames": 2, **labels}))
    return directory


def test_every_run_trains_once_from_its_base_and_a_rerun_trains_nothing(tmp_path, pipeline):
    robot = make_sample(tmp_path / "robot", name="robot-1", kind="robot")
    cat = make_sample(tmp_path / "cat")  # no labels: named and kinded after its folder
    out = tmp_path / "out"
    argv = ["--samples", str(robot), str(cat), "--seeds", "3", "--networks", "hexplane", "--kml-weight", "2",
            "--scl-weight", "5", "--define", "PAL-x10=dynamic.loss.kml=20; dynamic.loss.scl=50",
            "--variants", "Ref", "Ref+PAL", "PAL-x10", "--out", str(out)]  # fmt: skip
    pal_ablation.main(argv)

    bases = [call for call in pipeline.calls if "dynamic" not in call["stages"]]
    runs = [call for call in pipeline.calls if "dynamic" in call["stages"]]
    assert [call["run_dir"] for call in bases] == [f"'{out / 'base' / 'robot-1-s3'}'", f"'{out / 'base' / 'cat-s3'}'"]
    assert len(runs) == 6 and all(call["copied"] and call["resume"] == "true" for call in runs)
    pal = next(call for call in runs if call["run_dir"].endswith("robot-1-s3/hexplane/Ref+PAL'"))
    assert (pal["dynamic.loss.kml"], pal["dynamic.loss.scl"], pal["dynamic/deformation"]) == ("2.0", "5.0", "hexplane")
    assert (pal["sample"], pal["seed"], pal["experiment"]) == (f"'{robot}'", "3", "ground_truth")
    lines = read_results(out / "results.jsonl")
    assert [(line["sample"], line["kind"], line["variant"]) for line in lines] == [
        ("robot-1", "robot", "Ref"), ("robot-1", "robot", "Ref+PAL"), ("robot-1", "robot", "PAL-x10"),
        ("cat", "cat", "Ref"), ("cat", "cat", "Ref+PAL"), ("cat", "cat", "PAL-x10")]  # fmt: skip
    assert lines[2]["overrides"] == ["dynamic.loss.kml=20", "dynamic.loss.scl=50"]
    assert (lines[0]["static_heldout_psnr"], lines[0]["heldout_psnr_object"]) == (30.0, 24.0)
    assert "| hexplane | PAL-x10 | 25.00 ± 0.00 | 24.00 ± 0.00 | +0.00 ± 0.00 |" in (out / "table.md").read_text()

    pipeline.calls.clear()
    pal_ablation.main(argv)
    assert pipeline.calls == [] and len(read_results(out / "results.jsonl")) == 6


def test_an_interrupted_run_is_continued_not_recopied(tmp_path, pipeline):
    job = pal_ablation.Job(pal_ablation.read_sample(make_sample(tmp_path / "robot")), seed=0)
    variants = pal_ablation.builtin_variants(1.0, 1.0)
    out = tmp_path / "out"
    pipeline.interrupt = "Ref+KML"
    with pytest.raises(KeyboardInterrupt):
        pal_ablation.run_ablation([job], ["hexplane"], variants, out, [])
    assert [line["variant"] for line in read_results(out / "results.jsonl")] == ["Ref", "Ref+SCL"]

    pipeline.calls.clear()
    pal_ablation.run_ablation([job], ["hexplane"], variants, out, [])
    assert [call["run_dir"].split("/")[-1] for call in pipeline.calls] == ["robot-s0'", "Ref+KML'", "Ref+PAL'"]
    assert (out / "runs" / "robot-s0" / "hexplane" / "Ref+KML" / "dynamic" / "checkpoint.pt").read_text() == "halfway"
    assert len(read_results(out / "results.jsonl")) == 4


def test_a_run_copied_from_an_earlier_base_is_recopied(tmp_path):
    base, run_dir = tmp_path / "base", tmp_path / "runs" / "hexplane" / "Ref"
    (base / "keypoints").mkdir(parents=True)
    (base / "keypoints" / "DONE").write_text("")
    pal_ablation.ready_run_dir(base, run_dir)
    (run_dir / "dynamic").mkdir()
    pal_ablation.ready_run_dir(base, run_dir)
    assert (run_dir / "dynamic").exists()  # same base: continued

    done = base / "keypoints" / "DONE"
    os.utime(done, ns=(done.stat().st_atime_ns, done.stat().st_mtime_ns + 10**9))  # the base's last stage redone
    pal_ablation.ready_run_dir(base, run_dir)
    assert not (run_dir / "dynamic").exists() and (run_dir / "keypoints" / "DONE").exists()


def test_synthetic_samples_are_written_once_per_kind_and_seed(tmp_path, monkeypatch):
    synthetic = pytest.importorskip("dynapose4d.data.synthetic")
    written = []

    def write(directory, kind, seed, *, num_frames, resolution):
        written.append((kind, seed, num_frames, resolution))
        return make_sample(directory, name=f"{kind}-{seed}", kind=kind)

    monkeypatch.setattr(synthetic, "write_synthetic_sample", write, raising=False)
    for _ in range(2):
        jobs = pal_ablation.synthetic_jobs(["quadruped", "biped"], [0, 1], tmp_path, frames=4, resolution=32)
    assert written == [("quadruped", 0, 4, 32), ("quadruped", 1, 4, 32), ("biped", 0, 4, 32), ("biped", 1, 4, 32)]
    assert [job.name for job in jobs] == ["quadruped-0-s0", "quadruped-1-s1", "biped-0-s0", "biped-1-s1"]
    assert [job.sample.kind for job in jobs] == ["quadruped", "quadruped", "biped", "biped"]


def test_variants_defaults_definitions_and_selection(tmp_path, monkeypatch):
    loss = SimpleNamespace(kml=7.0, scl=9.0)
    monkeypatch.setattr(
        pal_ablation, "compose_config", lambda overrides: SimpleNamespace(dynamic=SimpleNamespace(loss=loss))
    )
    define = ["--define", "Ref=dynamic.loss.kml=0;dynamic.loss.scl=0;seed=1", "--define", "X=a=1"]
    _, args = pal_ablation.parse_args(define)
    job = pal_ablation.Job(pal_ablation.Sample(tmp_path, "s", "k"), 0)
    variants = pal_ablation.make_variants(args, job)
    assert list(variants) == ["Ref", "Ref+SCL", "Ref+KML", "Ref+PAL", "X"]
    assert variants["Ref+PAL"] == ["dynamic.loss.kml=7.0", "dynamic.loss.scl=9.0"]
    assert variants["Ref"][-1] == "seed=1"
    with pytest.raises(ValueError, match="unknown variants"):
        pal_ablation.select_variants(variants, ["Ref", "Y"])
    with pytest.raises(SystemExit):
        pal_ablation.parse_args(["--define", "no-overrides"])


def test_two_samples_with_one_name_are_refused(tmp_path):
    jobs = [pal_ablation.Job(pal_ablation.read_sample(make_sample(tmp_path / d, name="same")), 0) for d in "ab"]
    with pytest.raises(ValueError, match="both named 'same'"):
        pal_ablation.check_unique_names(jobs)
