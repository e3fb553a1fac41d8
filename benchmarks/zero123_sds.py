"""Zero123 SDS cost with full-size randomly initialised components (the real architectures).

Writes the random components once in the hub repos' layout (fp16 on CUDA), loads
them with the pipeline's own loader, then measures:
  step   -- one static-stage step's prior part: render `--batch` novel views at 256², encode
            them, one guided UNet call, backward into the Gaussians (median of `--repeats`);
  stage  -- the whole static stage through `scripts/train.py` (paper settings: 500 iterations,
            batch 16) with `static.model=` pointing at the random weights (`--stage`; CUDA only
            by default, as it takes hours on a CPU).
Peak memory is torch.cuda.max_memory_allocated on CUDA, the process's peak RSS on CPU.
Run with `python benchmarks/zero123_sds.py [--batch 16] [--stage]`.
"""

import argparse
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dynapose4d.cameras import sample_orbit_cameras  # noqa: E402
from dynapose4d.gaussians import GaussianModel  # noqa: E402
from dynapose4d.pretrained.zero123 import load_zero123  # noqa: E402
from dynapose4d.pretrained.zero123_random import write_random_zero123  # noqa: E402
from dynapose4d.priors import ViewBatch  # noqa: E402
from dynapose4d.priors.zero123 import Zero123Prior  # noqa: E402
from dynapose4d.render import rasterize  # noqa: E402

SIZE = 256


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(prior: Zero123Prior, batch: int, repeats: int, device: torch.device) -> list[float]:
    model = GaussianModel.from_sphere(5000, 0.5, torch.Generator().manual_seed(0)).to(device)
    generator = torch.Generator().manual_seed(0)
    backend = "gsplat" if device.type == "cuda" else "torch"
    times = []
    for repeat in range(repeats + 1):  # the first run warms up kernels and allocators
        cameras, elevations, azimuths = sample_orbit_cameras(batch, generator, width=SIZE, height=SIZE)
        views = ViewBatch(cameras.to(device), elevations, azimuths, 2.0)
        synchronize(device)
        start = time.perf_counter()
        colors, alphas, _ = rasterize(
            **model.activated(), viewmats=views.cameras.viewmats, Ks=views.cameras.Ks, width=SIZE, height=SIZE,
            backgrounds=torch.ones(batch, 3, device=device), backend=backend,
        )  # fmt: skip
        prior.loss(colors, alphas, views, step_ratio=repeat / repeats).backward()
        synchronize(device)
        if repeat:
            times.append(time.perf_counter() - start)
    return times


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def time_stage(weights: Path, device: torch.device, workdir: Path, iterations: int) -> float:
    pixels = np.zeros((256, 256, 4), dtype=np.uint8)
    pixels[64:192, 80:176] = (200, 120, 60, 255)
    Image.fromarray(pixels, "RGBA").save(workdir / "box.png")
    command = [
        sys.executable, str(ROOT / "scripts" / "train.py"), f"image={workdir / 'box.png'}", f"device={device}",
        f"run_dir={workdir / 'run'}", "static.prior=zero123", f"static.model={weights}",
        f"static.iterations={iterations}",
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=workdir)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[16])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--stage", action=argparse.BooleanOptionalAction, default=None, help="default: on CUDA only")
    parser.add_argument("--stage-iterations", type=int, default=500)
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32  # as build_prior chooses
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device: {name}, torch {torch.__version__}, threads {torch.get_num_threads()}, {dtype}")

    with tempfile.TemporaryDirectory() as temporary:
        workdir = Path(temporary)
        weights = write_random_zero123(workdir / "zero123-full-random", "full", dtype=dtype)  # fp16 halves the disk
        components = load_zero123(weights, device, dtype)
        parameters = sum(
            p.numel() for m in (components.unet, components.vae, components.image_encoder) for p in m.parameters()
        )
        print(f"components: {parameters / 1e6:.0f}M parameters (UNet, VAE, CLIP image tower)")
        reference = torch.zeros(SIZE, SIZE, 4)
        reference[64:192, 80:176] = torch.tensor([0.8, 0.5, 0.2, 1.0])
        prior = Zero123Prior(components, reference[None], 5.0, (0.98, 0.02), stable=False)
        print("| views per step | SDS step median (s) | min | max | peak memory (GiB) |")
        print("|---|---|---|---|---|")
        for batch in args.batch:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            times = time_steps(prior, batch, args.repeats, device)
            print(
                f"| {batch} | {statistics.median(times):.3f} | {min(times):.3f} | {max(times):.3f} "
                f"| {peak_memory_gib(device):.2f} |",
                flush=True,
            )
        if args.stage if args.stage is not None else device.type == "cuda":
            del prior, components
            seconds = time_stage(weights, device, workdir, args.stage_iterations)
            print(f"static stage, {args.stage_iterations} iterations (paper settings): {seconds:.1f} s")


if __name__ == "__main__":
    main()
