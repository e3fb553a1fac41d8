"""Pose Alignment Loss ablation on the synthetic subject: Ref-only vs Ref+SCL vs Ref+KML vs Ref+PAL.

For each subject kind and seed, the static, video and keypoints stages run once; every
(deformation network, loss variant) pair then trains the dynamic stage from copies of
that run directory, so all variants start from the same static model and the same
driving video. Held-out-view PSNR is measured at every frame against ground truth.

    python benchmarks/pal_ablation.py                        # 2 kinds x 3 seeds x 4 variants x 2 networks
    python benchmarks/pal_ablation.py --kinds biped --seeds 0 --networks hexplane

Writes <out>/results.json, <out>/table.md and <out>/psnr_over_frames.png.
"""

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hydra import compose, initialize_config_dir  # noqa: E402

from dynapose4d.pipeline import run  # noqa: E402

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")
VARIANTS = {  # (KML on, SCL on)
    "Ref": (False, False),
    "Ref+SCL": (False, True),
    "Ref+KML": (True, False),
    "Ref+PAL": (True, True),
}


def compose_config(overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=["experiment=synthetic", *overrides])


def prepare_base(kind: str, seed: int, out: Path, extra: list[str]) -> Path:
    """Static + video + keypoints for one subject, shared by every variant."""
    base = out / "base" / f"{kind}-{seed}"
    if not (base / "keypoints" / "DONE").exists():
        overrides = [f"synthetic.kind={kind}", f"synthetic.seed={seed}", f"seed={seed}", f"run_dir={base}",
                     "stages=[static,video,keypoints]", f"resume={base.exists()}", *extra]  # fmt: skip
        run(compose_config(overrides))
    return base


def run_variant(base: Path, kind: str, seed: int, network: str, variant: str, out: Path, args) -> dict:
    kml_on, scl_on = VARIANTS[variant]
    kml_weight, scl_weight = args.kml_weight if kml_on else 0, args.scl_weight if scl_on else 0
    run_dir = out / "runs" / f"{kind}-{seed}" / network / variant
    if not (run_dir / "dynamic" / "DONE").exists():
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.copytree(base, run_dir)
        overrides = [
            f"synthetic.kind={kind}", f"synthetic.seed={seed}", f"seed={seed}", f"run_dir={run_dir}", "resume=true",
            "stages=[static,video,keypoints,dynamic]", f"deformation={network}",
            f"loss.kml.weight={kml_weight}", f"loss.scl.weight={scl_weight}",
            *args.override,
        ]  # fmt: skip
        start = time.perf_counter()
        run(compose_config(overrides))
        (run_dir / "dynamic" / "seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
    return json.loads((run_dir / "metrics.json").read_text())["dynamic"]


def summarise(results: list[dict], out: Path) -> None:
    networks = sorted({r["network"] for r in results})
    lines = ["| network | variant | held-out PSNR (dB) | Δ vs Ref | reference PSNR (dB) | held-out SSIM | runs |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for network in networks:
        baseline = _paired(results, network, "Ref")
        for variant in VARIANTS:
            rows = _paired(results, network, variant)
            if not rows:
                continue
            heldout = [r["heldout_psnr"] for r in rows.values()]
            delta = [rows[key]["heldout_psnr"] - baseline[key]["heldout_psnr"] for key in rows if key in baseline]
            lines.append(
                f"| {network} | {variant} | {statistics.mean(heldout):.2f} ± {_std(heldout):.2f} | "
                f"{statistics.mean(delta):+.2f} | {statistics.mean(r['reference_psnr'] for r in rows.values()):.2f} | "
                f"{statistics.mean(r['heldout_ssim'] for r in rows.values()):.4f} | {len(rows)} |"
            )
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(results, networks, out / "psnr_over_frames.png")


def plot(results: list[dict], networks: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(networks), figsize=(6 * len(networks), 4), squeeze=False)
    for axis, network in zip(axes[0], networks):
        for variant in VARIANTS:
            curves = [
                r["per_frame"]["heldout_psnr"] for r in results if r["network"] == network and r["variant"] == variant
            ]
            if curves:
                mean = [statistics.mean(values) for values in zip(*curves)]
                axis.plot(range(len(mean)), mean, marker="o", markersize=3, label=variant)
        axis.set(title=f"{network}: held-out PSNR per frame (mean over subjects)", xlabel="frame", ylabel="PSNR (dB)")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def _paired(results, network, variant) -> dict:
    return {(r["kind"], r["seed"]): r for r in results if r["network"] == network and r["variant"] == variant}


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", default=["quadruped", "biped"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--networks", nargs="+", default=["hexplane", "sparse_control"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--kml-weight", type=float, default=compose_config([]).loss.kml.weight)
    parser.add_argument("--scl-weight", type=float, default=compose_config([]).loss.scl.weight)
    parser.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides for every run")
    parser.add_argument("--out", type=Path, default=Path("outputs/pal_ablation"))
    args = parser.parse_args()

    results = []
    for kind in args.kinds:
        for seed in args.seeds:
            base = prepare_base(kind, seed, args.out, args.override)
            for network in args.networks:
                for variant in args.variants:
                    metrics = run_variant(base, kind, seed, network, variant, args.out, args)
                    results.append({"kind": kind, "seed": seed, "network": network, "variant": variant, **metrics})
                    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    summarise(results, args.out)


if __name__ == "__main__":
    main()
