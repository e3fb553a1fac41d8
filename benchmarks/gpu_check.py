"""GPU validation in one command: gsplat parity, each stage's step time and peak memory, the whole run.

Every model is randomly initialised in its real architecture and on-disk format (no
downloads), and every stage runs through the pipeline's own classes at the default settings:
  rasteriser   gsplat vs the torch backend on one scene: image and gradient max abs error,
               forward + backward time at 256² and 512² with 16k and 100k Gaussians;
  static       one step of the static stage (batch 16, fp16 Zero123 / Stable Zero123, scored
               static.prior_chunk views at a time) at each novel-view size of its schedule
               (128², 256², 512²): time and peak memory;
  video        Stable Video Diffusion at the default settings, with and without CPU offload;
  keypoints    PoseAnything (SwinV2-B, the release checkpoint's) on the 14 driving frames;
  dynamic      one step of the dynamic stage (14 frames, 4 SDS views per frame, scored
               dynamic.prior_chunk at a time) per deformation network, at each novel-view size;
  projection   the whole `image=cat.png` run from these times and the configured iterations,
               and whether each stage's peak fits a 24 GB card.
These are the settings benchmarks/memory.py estimates peak memory at, so its CPU estimate can
be checked against the peaks measured here. Writes benchmarks/gpu_results.json and gpu_results.md.
Without CUDA it says so and exits 0;
`--size tiny --allow-cpu` runs every section with tiny models on the CPU (what its test does).
Run with `python benchmarks/gpu_check.py`.
"""

import argparse
import functools
import json
import platform
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

CARD_GIB = 24.0  # the paper's RTX 3090
# The full-size check, and a tiny one whose only purpose is to run every line on a CPU.
SIZES = {
    "full": dict(zero123="full", svd="full", cape="base", image=256, views=(256, 512), counts=(16_000, 100_000),
                 svd_steps=25, svd_size=512, frames=14, cape_pixels=256, repeats=3, inputs=[], static=[], dynamic=[]),
    "tiny": dict(zero123="tiny", svd="tiny", cape="tiny", image=32, views=(32,), counts=(300,),
                 svd_steps=2, svd_size=32, frames=3, cape_pixels=64, repeats=1, inputs=["synthetic.num_gaussians=400"],
                 static=["static.batch_size=2", "static.render_size=32", "static.num_points=300",
                         "static.novel_view_sizes=[[0,16],[0.3,24],[0.6,32]]"],
                 dynamic=["dynamic.batch_size=2", "dynamic.render_size=32", "dynamic.views_per_frame=1",
                          "dynamic.novel_view_sizes=[[0,16],[0.3,24],[0.6,32]]"]),
}  # fmt: skip


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def timed(function, repeats: int, device: torch.device) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        function()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ----- rasteriser ----------------------------------------------------------------------------


def check_rasteriser(size: dict, device: torch.device) -> dict:
    from dynapose4d.cameras import reference_camera
    from dynapose4d.gaussians import GaussianModel

    rows = []
    backends = ["torch", "gsplat"] if device.type == "cuda" else ["torch"]
    for count in size["counts"]:
        model = GaussianModel.from_sphere(count, 0.5, torch.Generator().manual_seed(0)).to(device)
        for pixels in size["views"]:
            camera = reference_camera(pixels, pixels).to(device)
            row, outputs = {"gaussians": count, "pixels": pixels}, {}
            for backend in backends:
                step = functools.partial(raster_step, model, camera, backend)
                row[f"{backend}_s"] = timed(step, size["repeats"], device)
                outputs[backend] = step()
            if "gsplat" in outputs:
                (image_t, grads_t), (image_g, grads_g) = outputs["torch"], outputs["gsplat"]
                row["image_max_abs_error"] = (image_t - image_g).abs().max().item()
                row["grad_max_abs_error"] = {key: (grads_t[key] - grads_g[key]).abs().max().item() for key in grads_t}
            rows.append(row)
    return {"rows": rows}


def raster_step(model, camera, backend: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Forward + backward of image + alpha sums at one camera: (image [1, H, W, 3], gradients by name)."""
    from dynapose4d.render import rasterize

    leaves = {key: value.detach().requires_grad_(True) for key, value in model.activated().items()}
    colors, alphas, _ = rasterize(**leaves, viewmats=camera.viewmats, Ks=camera.Ks, width=camera.width,
                                  height=camera.height, backend=backend)  # fmt: skip
    (colors.sum() + alphas.sum()).backward()
    return colors.detach(), {key: value.grad for key, value in leaves.items()}


# ----- the stages, through the pipeline's classes --------------------------------------------


def compose(overrides: list[str]):
    from conftest import compose_config

    return compose_config(overrides)


def prepare_run(workdir: Path, size: dict, stages: str) -> Path:
    """A run directory whose inputs (and `stages`) are done, made from the synthetic subject quickly (oracle
    video and keypoints, a 1-step static model): the stage under test then starts from it."""
    from dynapose4d.pipeline import run

    run_dir = workdir / f"run_{time.monotonic_ns()}"
    run(compose(["experiment=synthetic", f"synthetic.num_frames={size['frames']}", f"image_size={size['image']}",
                 f"run_dir={run_dir}", "log.tensorboard=false", "log.images_every=0", f"stages={stages}",
                 "static.iterations=1", "static.prior=none", *size["inputs"]]))  # fmt: skip
    return run_dir


def stage_config(run_dir: Path, size: dict, extra: list[str]):
    """The default pipeline's config (not the synthetic experiment's) on that run directory."""
    return compose([f"image={run_dir / 'input' / 'reference.png'}", f"run_dir={run_dir}",
                    f"image_size={size['image']}", "log.tensorboard=false", "log.images_every=0", *extra])  # fmt: skip


def time_stage_steps(stage, iterations: int, schedule, repeats: int, device: torch.device) -> list[dict]:
    """One step's time and peak memory at each novel-view size of `schedule` ([[from ratio, size], ...])."""
    rows = []
    for ratio, pixels in schedule:
        reset_peak(device)

        def step(ratio=ratio):
            stage.step = int(ratio * iterations)  # the schedule's size at this point of the stage
            stage.train_step()

        rows.append({"novel_view_size": pixels, "from_ratio": ratio, "step_s": timed(step, repeats, device),
                     "peak_gib": peak_gib(device)})  # fmt: skip
    return rows


def check_static(size: dict, device: torch.device, workdir: Path, weights: Path, prior: str) -> dict:
    from dynapose4d.run import Run
    from dynapose4d.stages.static import StaticStage

    run_dir = prepare_run(workdir, size, "[]")
    cfg = stage_config(run_dir, size, [f"static.prior={prior}", f"static.model={weights}", *size["static"]])
    stage = StaticStage.from_run(Run(cfg, run_dir, device))
    rows = time_stage_steps(stage, cfg.static.iterations, cfg.static.novel_view_sizes, size["repeats"], device)
    return {"iterations": cfg.static.iterations, "batch_size": cfg.static.batch_size, "rows": rows}


def check_dynamic(size: dict, device: torch.device, workdir: Path, weights: Path, deformation: str) -> dict:
    """KML in its default mode: PoseAnything finds the keypoints on every rendered frame, so it runs here too."""
    from dynapose4d.run import Run
    from dynapose4d.stages.dynamic import DynamicStage

    run_dir = prepare_run(workdir, size, "[static,video,keypoints]")
    settings = [f"dynamic.model={weights}", f"dynamic/deformation={deformation}", "dynamic.prior=zero123",
                f"keypoints.checkpoint={random_cape_checkpoint(size, workdir)}", *size["dynamic"]]  # fmt: skip
    cfg = stage_config(run_dir, size, settings)
    stage = DynamicStage.from_run(Run(cfg, run_dir, device))
    rows = time_stage_steps(stage, cfg.dynamic.iterations, cfg.dynamic.novel_view_sizes, size["repeats"], device)
    return {"iterations": cfg.dynamic.iterations, "frames": stage.num_frames, "rows": rows}


def random_cape_checkpoint(size: dict, workdir: Path) -> Path:
    """A PoseAnything checkpoint of random weights in the release's format (mmpose's `state_dict`)."""
    from dynapose4d.pretrained.poseanything import build_cape

    path = workdir / f"cape_{size['cape']}.pth"
    if not path.exists():
        torch.save({"state_dict": build_cape(size["cape"]).state_dict()}, path)
    return path


def check_video(size: dict, device: torch.device, workdir: Path, cpu_offload: bool) -> dict:
    from dynapose4d.pretrained.svd import generate_driving_video, svd_pipeline
    from dynapose4d.pretrained.svd_random import write_random_svd

    weights = workdir / "svd"
    if not weights.exists():
        write_random_svd(weights, size["svd"], variant="fp16" if device.type == "cuda" else None)
    side = size["svd_size"]
    image = torch.ones(side, side, 3)
    reset_peak(device)
    with svd_pipeline(str(weights), device, cpu_offload=cpu_offload) as pipe:
        start = time.perf_counter()
        generate_driving_video(pipe, image, num_frames=size["frames"], steps=size["svd_steps"], height=side, width=side)
        synchronize(device)
        seconds = time.perf_counter() - start
    return {"cpu_offload": cpu_offload, "seconds": seconds, "peak_gib": peak_gib(device)}


def check_keypoints(size: dict, device: torch.device) -> dict:
    from dynapose4d.pretrained.poseanything import CapeDetector, build_cape

    model = build_cape(size["cape"]).to(device).eval()
    pixels, frames = size["cape_pixels"], size["frames"]  # PoseAnything's own 256² input, the driving video
    support = torch.ones(pixels, pixels, 3, device=device)
    points = torch.rand(14, 2, generator=torch.Generator().manual_seed(0)).to(device) * pixels
    detector = CapeDetector(model, support, points, [(i, i + 1) for i in range(13)])
    video = torch.rand(frames, pixels, pixels, 3, device=device)
    reset_peak(device)
    seconds = timed(lambda: detector.detect(video, 8), size["repeats"], device)
    return {"variant": size["cape"], "frames": frames, "seconds": seconds, "peak_gib": peak_gib(device)}


# ----- the projection and the report ---------------------------------------------------------


def stage_seconds(section: dict) -> float:
    """A training stage's time: each schedule segment's share of the iterations at its step time."""
    rows, iterations = section["rows"], section["iterations"]
    ends = [row["from_ratio"] for row in rows[1:]] + [1.0]
    return sum((end - row["from_ratio"]) * iterations * row["step_s"] for row, end in zip(rows, ends))


def project(results: dict) -> dict:
    """The whole default run (Zero123-XL, SVD with its default CPU offload, PoseAnything, hexplane) and 24 GB fits."""
    sections = results["sections"]
    parts = {
        "static (zero123)": stage_seconds(sections["static_zero123"]),
        "video (svd, cpu offload)": sections["video_offload"]["seconds"],
        "keypoints (poseanything)": sections["keypoints"]["seconds"],
        "dynamic (hexplane)": stage_seconds(sections["dynamic_hexplane"]),
    }
    peaks = {name: _peak(section) for name, section in sections.items() if name != "rasteriser"}
    return {
        "seconds": parts,
        "total_s": sum(parts.values()),
        "peak_gib": peaks,
        "fits_24gb": {name: (peak is not None and peak <= CARD_GIB) for name, peak in peaks.items()},
    }


def _peak(section: dict) -> float | None:
    peaks = [row["peak_gib"] for row in section.get("rows", [section]) if row.get("peak_gib") is not None]
    return max(peaks) if peaks else None


def markdown_report(results: dict) -> str:
    """The tables of benchmarks/RESULTS.md from `results` (gpu_results.json)."""
    lines = [f"Device: {results['device']} · torch {results['torch']} · size {results['size']}", ""]
    raster = results["sections"].get("rasteriser", {})
    if "rows" in raster:
        lines += ["| Gaussians | pixels | torch fwd+bwd (ms) | gsplat fwd+bwd (ms) | image max err | grad max err |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for row in raster["rows"]:
            grad = max(row["grad_max_abs_error"].values()) if "grad_max_abs_error" in row else None
            cells = [row["gaussians"], f"{row['pixels']}²", _ms(row["torch_s"]), _ms(row.get("gsplat_s")),
                     _num(row.get("image_max_abs_error")), _num(grad)]  # fmt: skip
            lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
        lines.append("")
    lines += [
        "| stage | setting | step or run time (s) | peak GPU memory (GiB) | fits 24 GB |",
        "|---|---|---|---|---|",
    ]
    for name, section in results["sections"].items():
        if name == "rasteriser":
            continue
        if "error" in section:
            lines.append(f"| {name} | failed: {section['error']} | | | |")
            continue
        for row in section.get("rows", [section]):
            setting = f"novel views {row['novel_view_size']}²" if "novel_view_size" in row else _setting(section)
            seconds = row.get("step_s", row.get("seconds"))
            fits = "" if row.get("peak_gib") is None else ("yes" if row["peak_gib"] <= CARD_GIB else "**no**")
            lines.append(f"| {name} | {setting} | {seconds:.3f} | {_num(row.get('peak_gib'))} | {fits} |")
    projection = results.get("projection")
    if projection:
        lines += ["", f"Projected `image=cat.png` run: {projection['total_s'] / 60:.1f} min "
                  f"({', '.join(f'{k} {v / 60:.1f} min' for k, v in projection['seconds'].items())})."]  # fmt: skip
    return "\n".join(lines) + "\n"


def _setting(section: dict) -> str:
    if "cpu_offload" in section:
        return "cpu offload" if section["cpu_offload"] else "no offload"
    return f"{section.get('variant', '')}, {section.get('frames', '')} frames"


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{1e3 * seconds:.1f}"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.3g}"


def run_sections(size: dict, device: torch.device, workdir: Path) -> dict:
    """Every section, each on its own: one that fails is reported with its error, the others still run."""
    from dynapose4d.pretrained.zero123_random import write_random_zero123

    dtype = torch.float16 if device.type == "cuda" else torch.float32
    zero123 = write_random_zero123(workdir / "zero123", size["zero123"], dtype=dtype)
    checks = {
        "rasteriser": lambda: check_rasteriser(size, device),
        "static_zero123": lambda: check_static(size, device, workdir, zero123, "zero123"),
        "static_stable_zero123": lambda: check_static(size, device, workdir, zero123, "stable_zero123"),
        "video_offload": lambda: check_video(size, device, workdir, cpu_offload=True),
        "video_no_offload": lambda: check_video(size, device, workdir, cpu_offload=False),
        "keypoints": lambda: check_keypoints(size, device),
        "dynamic_hexplane": lambda: check_dynamic(size, device, workdir, zero123, "hexplane"),
        "dynamic_sparse_control": lambda: check_dynamic(size, device, workdir, zero123, "sparse_control"),
    }
    sections = {}
    for name, check in checks.items():
        print(f"gpu_check: {name} ...", flush=True)
        try:
            sections[name] = check()
        except Exception as error:  # noqa: BLE001 - one report with every section, failures included
            traceback.print_exc()
            sections[name] = {"error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"}
    return sections


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--allow-cpu", action="store_true", help="run on the CPU (with --size tiny: a smoke test)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "gpu_results.json")
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.allow_cpu:
        print("no CUDA: the GPU check needs a CUDA device; nothing was measured")
        return 0
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    results = {"device": name, "torch": torch.__version__, "size": args.size}
    with tempfile.TemporaryDirectory() as directory:
        results["sections"] = run_sections(SIZES[args.size], device, Path(directory))
    try:
        results["projection"] = project(results)
    except (KeyError, TypeError) as error:  # a section it needs failed
        results["projection"] = {"error": f"a section it needs failed ({error})"}
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    report = markdown_report({**results, "projection": results["projection"] if "total_s" in results["projection"]
                              else None})  # fmt: skip
    args.out.with_suffix(".md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
