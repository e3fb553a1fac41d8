"""Peak GPU memory of one training step of each stage at the default settings, estimated on the CPU.

The static and dynamic stages are built through the pipeline's own classes, with full-size
random models in their real architectures (Zero123-XL's UNet, VAE and CLIP tower; PoseAnything
Base) and a static model of `--gaussians` Gaussians. One step's peak is estimated as

    weights      every frozen model's parameters and buffers, in the dtype the GPU runs it
                 (Zero123 fp16 with static.sds.half_precision; PoseAnything fp32)
  + trainable    what trains, with its gradient and Adam's two moments (fp32); frozen Gaussians once
  + saved        the peak of what autograd keeps for backward: the renders' graph (deformation,
                 L_Ref / KML through PoseAnything / SCL) plus one pass through the prior, counted
                 with saved_tensors_hooks, each storage once, at the GPU's dtype; and what gsplat's
                 projection and rasterize_to_pixels save (gsplat/cuda/_wrapper.py), from this
                 step's own Gaussians, cameras and tile intersections
  + transient    twice the largest saved tensor: a backward step holds the gradient it receives
                 and the one it produces

The saved tensors are counted, not kept (the meter stores a placeholder), so the step cannot be
backpropagated, which is why the estimate can count 56 views at once on a 24 GB CPU machine. It
runs the forward half of each stage's train_step through the stage's own methods, then the
prior on one chunk (`prior_chunk` views: a chunk's graph is freed before the next) and on every
view at once (the memory of the step before chunking). The renders come from the torch backend
without gradients (it keeps per-pair blocks for its backward, about 1.2 GB per 512² view at 30k
Gaussians, where gsplat keeps a few MB) and are then tracked as if rendered with them, so every
op after them counts. Not counted: the CUDA context (about 0.3-0.5 GiB), the
caching allocator's fragmentation, and the UNet's no-grad activations (one batch of 2 x chunk
latents at 32², small beside the VAE's saved activations).

On CUDA the same script also runs each step for real at both chunk sizes and reports
torch.cuda.max_memory_allocated beside the estimate. benchmarks/gpu_check.py times the same
default settings. Run `python benchmarks/memory.py`; writes benchmarks/memory_results.json and
prints the table (`--size tiny` runs every line with tiny models, what its test does).
"""

import argparse
import contextlib
import gc
import json
import platform
import sys
import tempfile
import weakref
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from gpu_check import (  # noqa: E402
    CARD_GIB,
    SIZES,
    peak_gib,
    prepare_run,
    random_cape_checkpoint,
    reset_peak,
    stage_config,
)

GIB = 2**30
ADAM_COPIES = 4  # a trained fp32 tensor: itself, its gradient and Adam's two moments


class SavedTensorMeter:
    """Counts the bytes autograd saves for backward in `count()` blocks, keeping none of them.

    A storage is counted once while it is allocated (a weak reference to it says so; weights and other
    `excluded` storages never: they are counted as weights). Inside `count(half=True)` float32
    tensors count at 2 bytes an element: the fp16 model the GPU runs. `release(scope)` forgets
    a scope's bytes, as a backward pass through that part of the graph frees them.
    """

    def __init__(self, excluded: list[torch.Tensor]):
        self.excluded = {tensor.untyped_storage().data_ptr() for tensor in excluded}
        self.live: dict[int, tuple[weakref.ref, str]] = {}  # storage pointer -> (the storage, its scope)
        # Bytes per scope: a storage freed here and its memory reused by a later tensor counts twice, as the
        # real graph would keep both.
        self.scopes: dict[str, int] = {}
        self.bytes = self.peak = self.largest = 0
        self.scope, self.half = "", False

    @contextlib.contextmanager
    def count(self, scope: str, half: bool = False):
        self.scope, self.half = scope, half
        with torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack):
            yield self

    def release(self, scope: str) -> None:
        self.live = {pointer: entry for pointer, entry in self.live.items() if entry[1] != scope}
        self.bytes -= self.scopes.pop(scope, 0)

    def add(self, scope: str, size: int) -> None:
        """`size` bytes saved in `scope`: a tensor the hooks saw, or what a kernel saves unseen (gsplat's, modelled)."""
        self.scopes[scope] = self.scopes.get(scope, 0) + size
        self.bytes += size
        self.peak, self.largest = max(self.peak, self.bytes), max(self.largest, size)

    def scope_bytes(self, scope: str) -> int:
        return self.scopes.get(scope, 0)

    def _pack(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        known = self.live.get(pointer)
        if pointer in self.excluded or (known is not None and known[0]() is not None):
            return None
        size = storage.nbytes()
        if self.half and tensor.dtype == torch.float32:
            size //= 2
        self.live[pointer] = (weakref.ref(storage), self.scope)
        self.add(self.scope, size)
        return None

    @staticmethod
    def _unpack(_) -> torch.Tensor:
        raise RuntimeError("SavedTensorMeter counts saved tensors without keeping them: no backward inside count()")


GSPLAT_TILE = 16  # gsplat's default tile size, in pixels


def gsplat_saved_bytes(info: dict, channels: int) -> int:
    """What gsplat keeps for backward when it renders these cameras (gsplat/cuda/_wrapper.py): the fully
    fused projection's radii and conics, rasterize_to_pixels' means2d, colours, opacities, tile offsets,
    flatten_ids (one int32 per Gaussian-tile intersection), render_alphas and last_ids.

    `info` is the torch backend's (gsplat's semantics: means2d [C, N, 2], radii [C, N] or [C, N, 2] in
    pixels, 0 when culled); the intersections are counted on gsplat's 16-pixel tiles.
    """
    means2d, radii = info["means2d"].detach(), info["radii"]
    cameras, count = means2d.shape[:2]
    height, width = info["height"], info["width"]
    tiles_x, tiles_y = -(-width // GSPLAT_TILE), -(-height // GSPLAT_TILE)
    radius = (radii if radii.dim() == 3 else radii[..., None].expand(-1, -1, 2)).to(means2d)  # [C, N, 2]
    limit = torch.tensor([tiles_x - 1, tiles_y - 1], dtype=means2d.dtype)
    low = torch.minimum(((means2d - radius) / GSPLAT_TILE).floor().clamp_min(0), limit)
    high = torch.minimum(((means2d + radius) / GSPLAT_TILE).floor().clamp_min(0), limit)
    visible = (radius > 0).all(-1)  # [C, N]
    intersections = int(((high - low + 1).prod(-1) * visible).sum())
    per_gaussian = 4 * (2 + 3 + 2 + channels + 1)  # radii (int32), conics, means2d, colours, opacity
    per_pixel = 4 + 4  # render_alphas, last_ids (int32)
    return (cameras * count * per_gaussian + cameras * height * width * per_pixel
            + cameras * tiles_x * tiles_y * 4 + intersections * 4)  # fmt: skip


def metered_rasterize(meter: "SavedTensorMeter", rasterize):
    """`rasterize` that renders without gradients, adds gsplat's saved bytes to the meter's current scope,
    and returns renders that autograd tracks from there on (so what later ops save is counted)."""

    def render(**arguments):
        with torch.no_grad():
            colors, alphas, info = rasterize(**arguments)
        meter.add(meter.scope, gsplat_saved_bytes(info, colors.shape[-1]))
        return colors.requires_grad_(True), alphas.requires_grad_(True), info

    return render


@contextlib.contextmanager
def replaced(module, name: str, value):
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


def weight_tensors(modules) -> list[torch.Tensor]:
    return [tensor for module in modules for tensor in [*module.parameters(), *module.buffers()]]


def tensor_bytes(tensors, bytes_per_element: int | None = None) -> int:
    """Bytes of `tensors`, at their own dtype or at `bytes_per_element`."""
    return sum(t.numel() * (bytes_per_element or t.element_size()) for t in tensors)


def parameter_bytes(modules, bytes_per_element: int | None = None) -> int:
    """Parameters and buffers of `modules`, at their own dtype or at `bytes_per_element`."""
    return tensor_bytes(weight_tensors(modules), bytes_per_element)


def zero123_modules(prior) -> list[torch.nn.Module]:
    parts = prior.components
    return [parts.unet, parts.vae, parts.image_encoder, parts.projection]


def prior_passes(meter: SavedTensorMeter, stage, colors, alphas, views, step_ratio: float) -> dict:
    """Saved bytes of the prior on one chunk and on every view, each pass released before the next."""
    leaves = [tensor.detach().requires_grad_(True) for tensor in (colors, alphas)]  # as priors/chunks.py
    peaks = {}
    for name, count in (("chunked", stage.settings.prior_chunk), ("unchunked", len(views))):
        meter.peak, meter.largest = meter.bytes, 0
        with meter.count("prior", half=stage.prior.dtype == torch.float32 and half_precision(stage)):
            stage.prior.loss(leaves[0][:count], leaves[1][:count], views[:count], step_ratio)
        peaks[name] = {"views": min(count, len(views)), "peak_saved": meter.peak,
                       "prior_saved": meter.scope_bytes("prior"), "largest": meter.largest}  # fmt: skip
        meter.release("prior")
    return peaks


def half_precision(stage) -> bool:
    """Whether the GPU would run this stage's Zero123 in fp16 (the CPU always runs it in fp32)."""
    return bool(stage.settings.sds.half_precision)


def zero123_bytes(stage) -> int:
    """Zero123's weights as the GPU holds them: fp16 with sds.half_precision, else fp32."""
    return parameter_bytes(zero123_modules(stage.prior), 2 if half_precision(stage) else 4)


def largest_novel_ratio(settings) -> float:
    """The step ratio from which the schedule renders its largest novel views (the step's peak)."""
    return max(settings.novel_view_sizes, key=lambda entry: entry[1])[0]


def static_estimate(stage) -> dict:
    """The forward half of StaticStage.train_step at its largest novel-view size, then the prior's passes."""
    from dynapose4d.render import rasterize

    settings, backend = stage.settings, stage.cfg.render.backend
    stage.step = int(largest_novel_ratio(settings) * settings.iterations)
    gaussians_weights = list(stage.model.params.values())
    meter = SavedTensorMeter(weight_tensors(zero123_modules(stage.prior)) + gaussians_weights)
    render = metered_rasterize(meter, rasterize)
    with meter.count("stage"):
        gaussians = stage.model.activated()
        camera = stage.reference_camera
        colors, alphas, _ = render(
            **gaussians, viewmats=camera.viewmats, Ks=camera.Ks, width=camera.width, height=camera.height,
            backgrounds=stage.background[None], backend=backend,
        )  # fmt: skip
        torch.nn.functional.mse_loss(colors.clamp(0, 1), stage.target_rgb)  # the reference terms
        torch.nn.functional.mse_loss(alphas, stage.target_mask)
        views = stage.sample_views()
        # One view per call, as the torch backend's temporaries (about 1.2 GB per 512² view at 30k
        # Gaussians) would not fit a CPU 16 at a time; gsplat keeps the same per view either way.
        rendered = [
            render(
                **gaussians, viewmats=views.cameras.viewmats[i : i + 1], Ks=views.cameras.Ks[i : i + 1],
                width=views.cameras.width, height=views.cameras.height, backgrounds=views.backgrounds[i : i + 1],
                backend=backend,
            )
            for i in range(len(views))
        ]  # fmt: skip
        novel = torch.cat([colors for colors, _, _ in rendered]).clamp(0, 1)
        novel_alphas = torch.cat([alphas for _, alphas, _ in rendered])
    saved_stage = meter.scope_bytes("stage")
    passes = prior_passes(meter, stage, novel, novel_alphas, views, stage.step / settings.iterations)
    weights = zero123_bytes(stage)
    trainable = tensor_bytes(gaussians_weights) * ADAM_COPIES
    return summarise("static", settings, len(views), novel.shape[1], weights, trainable, saved_stage, passes)


def dynamic_estimate(stage) -> dict:
    """The forward half of DynamicStage.train_step at its largest novel-view size, then the prior's passes."""
    from dynapose4d.deform import normalised_time
    from dynapose4d.render import rasterize
    from dynapose4d.stages import dynamic
    from dynapose4d.stages.terms import DynamicBatch

    settings = stage.settings
    stage.step = int(largest_novel_ratio(settings) * settings.iterations)
    frozen = zero123_modules(stage.prior) + ([stage.detector.model] if hasattr(stage, "detector") else [])
    gaussians_weights = list(stage.model.params.values())
    phi = list(stage.deformation.parameters())
    meter = SavedTensorMeter(weight_tensors(frozen) + gaussians_weights + phi)
    with meter.count("stage"), replaced(dynamic, "rasterize", metered_rasterize(meter, rasterize)):
        frames = stage.sample_frames()
        views = stage.sample_views(frames)
        deformed = stage.deformed(frames)
        renders, alphas, novel, novel_alphas = stage.render(deformed, views)
        t = normalised_time(frames.float(), stage.num_frames)
        batch = DynamicBatch(renders, alphas, frames, views, novel, novel_alphas, t, deformed)
        for name, term in stage.terms.items():
            if name != "prior":  # the prior's passes are counted apart, chunk by chunk
                term(batch)
    saved_stage = meter.scope_bytes("stage")
    passes = prior_passes(meter, stage, novel, novel_alphas, views, stage.step / settings.iterations)
    weights = zero123_bytes(stage)
    weights += parameter_bytes([stage.detector.model]) if hasattr(stage, "detector") else 0
    trained = phi + (gaussians_weights if settings.optimize_gaussians else [])
    trainable = tensor_bytes(trained) * ADAM_COPIES
    if not settings.optimize_gaussians:
        trainable += tensor_bytes(gaussians_weights)
    return summarise("dynamic", settings, len(views), novel.shape[1], weights, trainable, saved_stage, passes)


def summarise(name, settings, views: int, pixels: int, weights, trainable, saved_stage, passes) -> dict:
    rows = {}
    for key, measured in passes.items():
        transient = 2 * measured["largest"]
        total = weights + trainable + measured["peak_saved"] + transient
        rows[key] = {**measured, "transient": transient, "estimate": total}
    return {"stage": name, "views": views, "novel_view_size": pixels, "prior_chunk": settings.prior_chunk,
            "weights": weights, "trainable": trainable, "stage_saved": saved_stage, "passes": rows}  # fmt: skip


def cuda_peaks(stage) -> dict[str, float]:
    """On CUDA: torch.cuda.max_memory_allocated (GiB) of one real step at each chunk size."""
    device, chunk = stage.device, stage.settings.prior_chunk
    stage.step = int(largest_novel_ratio(stage.settings) * stage.settings.iterations)
    peaks = {}
    for name, size in (("chunked", chunk), ("unchunked", 10**6)):
        stage.settings.prior_chunk = size
        reset_peak(device)
        try:
            stage.train_step()
            peaks[name] = peak_gib(device)
        except torch.OutOfMemoryError:
            peaks[name] = float("inf")
        stage.step -= 1
    stage.settings.prior_chunk = chunk
    return peaks


def build_stages(size: dict, workdir: Path, device: torch.device, gaussians: int, overrides: list[str]) -> dict:
    """The static and dynamic stages at the default settings on a prepared run (gpu_check's), full-size models."""
    from omegaconf import open_dict

    from dynapose4d.pretrained.zero123_random import write_random_zero123
    from dynapose4d.run import Run
    from dynapose4d.stages.dynamic import DynamicStage
    from dynapose4d.stages.static import StaticStage

    dtype = torch.float16 if device.type == "cuda" else torch.float32
    zero123 = write_random_zero123(workdir / "zero123", size["zero123"], dtype=dtype)
    size = {**size, "inputs": [*size["inputs"], f"static.num_points={gaussians}"]}
    run_dir = prepare_run(workdir, size, "[static,video,keypoints]")
    common = [f"static.model={zero123}", f"keypoints.checkpoint={random_cape_checkpoint(size, workdir)}", *overrides]
    static_cfg = stage_config(run_dir, size, [*common, f"static.num_points={gaussians}", *size["static"]])
    dynamic_cfg = stage_config(run_dir, size, [*common, *size["dynamic"]])
    for cfg in (static_cfg, dynamic_cfg):
        with open_dict(cfg):
            cfg.dynamic.prior, cfg.static.prior = "zero123", "zero123"
    return {"static": lambda: StaticStage.from_run(Run(static_cfg, run_dir, device)),
            "dynamic": lambda: DynamicStage.from_run(Run(dynamic_cfg, run_dir, device))}  # fmt: skip


def markdown_table(results: dict) -> str:
    lines = [f"Device: {results['device']} · torch {results['torch']} · size {results['size']} · "
             f"{results['gaussians']} Gaussians · card {CARD_GIB:.0f} GiB", "",
             "| stage | views scored at once | weights | trainable | renders + losses saved | prior saved | "
             "transient | estimate (GiB) | CUDA max allocated (GiB) | fits 24 GB |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for section in results["stages"]:
        for key, row in section["passes"].items():
            setting = f"{row['views']} of {section['views']} ({key}), novel views {section['novel_view_size']}²"
            cuda = section.get("cuda", {}).get(key)
            estimate = row["estimate"] / GIB
            cells = [section["stage"], setting, _gib(section["weights"]), _gib(section["trainable"]),
                     _gib(section["stage_saved"]), _gib(row["prior_saved"]), _gib(row["transient"]), f"{estimate:.2f}",
                     "" if cuda is None else f"{cuda:.2f}", "yes" if estimate <= CARD_GIB else "**no**"]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _gib(value: int) -> str:
    return f"{value / GIB:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--gaussians", type=int, default=30_000, help="Gaussians in the static model")
    parser.add_argument("--stages", default="static,dynamic")
    parser.add_argument(
        "--override", nargs="*", default=[], help="settings for both stages, e.g. dynamic.prior_chunk=4"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "memory_results.json")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    results = {"device": name, "torch": torch.__version__, "size": args.size, "gaussians": args.gaussians,
               "stages": []}  # fmt: skip
    estimators = {"static": static_estimate, "dynamic": dynamic_estimate}
    with tempfile.TemporaryDirectory() as directory:
        builders = build_stages(SIZES[args.size], Path(directory), device, args.gaussians, args.override)
        for stage_name in args.stages.split(","):
            print(f"memory: {stage_name} ...", flush=True)
            stage = builders[stage_name]()
            section = estimators[stage_name](stage)
            if device.type == "cuda":
                section["cuda"] = cuda_peaks(stage)
            results["stages"].append(section)
            del stage
            gc.collect()  # the stage's reference cycles hold its models (Zero123 is 4.4 GB in fp32)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    table = markdown_table(results)
    args.out.with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
