"""Stable Video Diffusion speed and memory: one driving video per setting, full-size random weights.

The components have the architecture of img2vid and img2vid-xt, which share it (spatio-temporal
UNet, temporal-decoder VAE, CLIP ViT-H/14), with random weights, so no download or licence is
needed and the times are the real model's. Each setting generates through
`generate_driving_video`, as the video stage does: a square video `N` (`--sizes 512`, the
default, DreamGaussian4D's) or, padded like gen_vid.py's optional branch, generated at H x W
and cropped back (`--sizes 576x1024`). `--decode-chunks all` decodes every frame at once (the
default); a number decodes that many at a time (less memory). Reports the median of
`--repeats` runs after a warm-up and the peak GPU memory (torch.cuda.max_memory_allocated).
Needs a CUDA GPU; run with `python benchmarks/svd_speed.py`.
"""

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynapose4d.pretrained.svd import generate_driving_video, place  # noqa: E402
from dynapose4d.pretrained.svd_random import random_svd  # noqa: E402

GIB = 1024**3


def parse_size(text: str) -> tuple[int, int | None]:
    """'576' -> a square 576 video; '576x1024' -> generated at 576 x 1024 (padded) and cropped to 576²."""
    match = re.fullmatch(r"(\d+)(?:x(\d+))?", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected N or HxW, got {text!r}")
    return int(match[1]), int(match[2]) if match[2] else None


def parse_chunk(text: str) -> int | None:
    """'all' -> None (every frame at once, the video stage's default); '2' -> 2 frames at a time."""
    if text == "all":
        return None
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected 'all' or a positive number of frames, got {text!r}")
    return int(text)


def time_once(pipe, image: torch.Tensor, settings: dict) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    generate_driving_video(pipe, image, **settings)
    torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[14])
    parser.add_argument("--sizes", type=parse_size, nargs="+", default=[(512, None), (576, 1024)])
    parser.add_argument("--decode-chunks", type=parse_chunk, nargs="+", default=[None, 2])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpu-offload", action="store_true", help="enable_model_cpu_offload (saves memory)")
    parser.add_argument("--forward-chunking", action="store_true", help="chunk the UNet's feed-forward layers")
    parser.add_argument("--fp32", action="store_true", help="full precision instead of fp16")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("svd_speed.py needs a CUDA GPU (Stable Video Diffusion at full size is far too slow on a CPU)")
    device = torch.device("cuda")
    dtype = torch.float32 if args.fp32 else torch.float16
    pipe = random_svd("full", seed=0, device=device, dtype=dtype)
    place(pipe, device, cpu_offload=args.cpu_offload, forward_chunking=args.forward_chunking)
    pipe.set_progress_bar_config(disable=True)
    weights = torch.cuda.memory_allocated() / GIB
    print(
        f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}, {str(dtype).split('.')[-1]}, "
        f"{args.steps} steps, cpu_offload={args.cpu_offload}, forward_chunking={args.forward_chunking}, "
        f"weights on the GPU {weights:.2f} GiB"
    )
    image = torch.rand(512, 512, 3, generator=torch.Generator().manual_seed(0))  # [S, S, 3]
    print("| frames | generated at | decode chunk | median (s) | min (s) | peak GPU memory (GiB) |")
    print("|---|---|---|---|---|---|")
    for frames in args.frames:
        for height, width in args.sizes:
            for chunk in args.decode_chunks:
                settings = dict(
                    num_frames=frames, steps=args.steps, decode_chunk_size=chunk, seed=0,
                    height=height, width=width or height, pad=width is not None,
                )  # fmt: skip
                time_once(pipe, image, settings)  # warm-up (cuDNN autotuning, allocator)
                torch.cuda.reset_peak_memory_stats()
                times = [time_once(pipe, image, settings) for _ in range(args.repeats)]
                peak = torch.cuda.max_memory_allocated() / GIB
                shape = f"{height}x{width}" if width else f"{height}²"
                median, best = statistics.median(times), min(times)
                chunk_text = "all" if chunk is None else chunk
                print(f"| {frames} | {shape} | {chunk_text} | {median:.2f} | {best:.2f} | {peak:.2f} |", flush=True)


if __name__ == "__main__":
    main()
