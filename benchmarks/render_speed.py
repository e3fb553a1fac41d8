"""Rasteriser speed: forward + backward time per backend, resolution and Gaussian count.

Two scenes bracket what training sees:
  sphere   -- the static stage's start: points uniform in a ball of radius 0.5, opacity 0.1,
              sizes from neighbour spacing (large, overlapping, translucent: the slow case);
  subject  -- the synthetic quadruped's surface Gaussians (small, opaque: a trained model).
One camera (the reference view), image + alpha summed as the loss. Reports the median of
`--repeats` timed runs after a warm-up; run with `python benchmarks/render_speed.py`.
"""

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynapose4d.cameras import reference_camera  # noqa: E402
from dynapose4d.data.synthetic import make_subject  # noqa: E402
from dynapose4d.gaussians import GaussianModel  # noqa: E402
from dynapose4d.render import rasterize, resolve_backend  # noqa: E402


def make_scene(kind: str, count: int) -> dict[str, torch.Tensor]:
    if kind == "sphere":
        model = GaussianModel.from_sphere(count, radius=0.5, generator=torch.Generator().manual_seed(0))
        return {key: value.detach() for key, value in model.activated().items()}
    return make_subject("quadruped", num_frames=2, seed=0, num_gaussians=count).gaussians_at(0)


def time_once(scene, cameras, backend: str, device: torch.device) -> float:
    leaves = {key: value.to(device).requires_grad_(True) for key, value in scene.items()}
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    colors, alphas, _ = rasterize(
        **leaves, viewmats=cameras.viewmats, Ks=cameras.Ks, width=cameras.width, height=cameras.height,
        backend=backend,
    )  # fmt: skip
    (colors.sum() + alphas.sum()).backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--counts", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--scenes", nargs="+", default=["sphere", "subject"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    backends = ["torch"] + (["gsplat"] if resolve_backend("auto", device) == "gsplat" else [])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device: {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| scene | size | Gaussians | backend | fwd+bwd median (s) | min (s) |")
    print("|---|---|---|---|---|---|")
    for kind in args.scenes:
        for count in args.counts:
            scene = make_scene(kind, count)
            for size in args.sizes:
                cameras = reference_camera(size, size).to(device)
                for backend in backends:
                    time_once(scene, cameras, backend, device)  # warm-up (allocator, gsplat JIT)
                    times = [time_once(scene, cameras, backend, device) for _ in range(args.repeats)]
                    median, best = statistics.median(times), min(times)
                    print(f"| {kind} | {size}² | {count} | {backend} | {median:.3f} | {best:.3f} |")


if __name__ == "__main__":
    main()
