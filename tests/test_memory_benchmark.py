"""benchmarks/memory.py on the CPU: its saved-tensor meter against a count of the tensors actually kept,
and every line of the estimate with tiny models."""

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import memory  # noqa: E402

from dynapose4d.pretrained.zero123_random import random_zero123  # noqa: E402


def kept_bytes(function, weights: list[torch.Tensor]) -> int:
    """Reference: keep every saved tensor alive, then add up each distinct storage that is not a weight once
    (all stay allocated, so no memory is reused)."""
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
        function()
    excluded = {t.untyped_storage().data_ptr() for t in weights}
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in kept}
    return sum(size for pointer, size in storages.items() if pointer not in excluded)


def vae_encode(vae, images):
    return vae.encode(images).latent_dist.mean.square().sum()


def test_the_meter_counts_what_autograd_keeps_without_keeping_it():
    vae = random_zero123("tiny").vae
    weights = list(vae.parameters())
    images = torch.rand(3, 3, 64, 64, requires_grad=True)
    expected = kept_bytes(lambda: vae_encode(vae, images), weights)
    meter = memory.SavedTensorMeter(weights)
    with meter.count("vae"):
        vae_encode(vae, images)
    assert expected > 0
    assert meter.bytes == expected
    with meter.count("vae-in-fp16", half=True):  # new images: the first pass's are still allocated, counted once
        vae_encode(vae, torch.rand(3, 3, 64, 64, requires_grad=True))
    assert meter.scope_bytes("vae-in-fp16") == expected // 2  # every saved tensor here is float32
    assert meter.peak == expected + expected // 2
    meter.release("vae-in-fp16")
    assert meter.bytes == expected


def test_a_metered_graph_cannot_be_backpropagated_by_mistake():
    meter = memory.SavedTensorMeter([])
    x = torch.rand(4, requires_grad=True)
    with meter.count("x"):
        y = x.exp().sum()
    assert meter.bytes == 16  # exp saves its output
    with pytest.raises(RuntimeError, match="counts saved tensors without keeping them"):
        y.backward()


@pytest.fixture(scope="module")
def tiny_estimates(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("memory")
    overrides = ["static.prior_chunk=1", "dynamic.prior_chunk=1", "dynamic.views_per_frame=2"]
    builders = memory.build_stages(memory.SIZES["tiny"], workdir, torch.device("cpu"), 300, overrides)
    return {name: estimate(builders[name]()) for name, estimate in
            (("static", memory.static_estimate), ("dynamic", memory.dynamic_estimate))}  # fmt: skip


@pytest.mark.parametrize("stage", ["static", "dynamic"])
def test_scoring_views_in_chunks_bounds_the_prior_share(tiny_estimates, stage):
    section = tiny_estimates[stage]
    chunked, unchunked = section["passes"]["chunked"], section["passes"]["unchunked"]
    assert chunked["views"] == 1 and unchunked["views"] == section["views"] >= 2
    # One view's VAE graph per chunk: the unchunked pass keeps every view's, in proportion.
    assert unchunked["prior_saved"] == pytest.approx(section["views"] * chunked["prior_saved"], rel=0.05)
    assert chunked["estimate"] < unchunked["estimate"]
    assert section["weights"] > 0 and section["trainable"] > 0 and section["stage_saved"] > 0


def test_the_report_lists_every_stage_and_chunk(tiny_estimates):
    results = {"device": "cpu", "torch": torch.__version__, "size": "tiny", "gaussians": 300,
               "stages": list(tiny_estimates.values())}  # fmt: skip
    table = memory.markdown_table(results)
    assert table.count("(chunked)") == 2 and table.count("(unchunked)") == 2


def test_gsplat_s_saved_bytes_hand_counted():
    """One 64x48 camera (4 x 3 tiles of 16 px), two Gaussians: one covering 2 x 2 tiles, one culled."""
    info = {
        "means2d": torch.tensor([[[20.0, 20.0], [5.0, 5.0]]]),  # [C=1, N=2, 2]
        "radii": torch.tensor([[[6, 6], [0, 0]]], dtype=torch.int32),  # spans x, y in [14, 26]: tiles 0-1
        "height": 48,
        "width": 64,
    }
    per_gaussian = 4 * (2 + 3 + 2 + 3 + 1)  # radii, conics, means2d, RGB, opacity
    expected = 1 * 2 * per_gaussian + 64 * 48 * 8 + 4 * 3 * 4 + 4 * 4  # ... pixels, tile offsets, 4 intersections
    assert memory.gsplat_saved_bytes(info, channels=3) == expected
