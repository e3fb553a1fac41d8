"""Motion priors beyond PAL (losses.py, stages/terms/motion.py) against hand-computed cases."""

import math
from types import SimpleNamespace

import pytest
import torch
from conftest import compose_config

from dynapose4d.deform import build_deformation
from dynapose4d.errors import DynaPoseError
from dynapose4d.geometry import axis_angle_quat, quat_to_matrix
from dynapose4d.losses import (
    arap_loss,
    best_rotations,
    isometry_loss,
    plane_total_variation,
    rigidity_loss,
    time_smoothness,
)
from dynapose4d.stages.terms import DYNAMIC_TERMS, DynamicBatch, build_terms
from dynapose4d.stages.terms.motion import neighbour_graph
from dynapose4d.validation import SettingsError, validate_settings

# Two points one unit apart, each the other's only neighbour.
PAIR = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
PAIR_GRAPH = (torch.tensor([[1], [0]]), torch.ones(2, 1))
IDENTITY = torch.eye(3).expand(1, 2, 3, 3)


def rotation(axis, degrees) -> torch.Tensor:
    unit = torch.nn.functional.normalize(torch.tensor([axis], dtype=torch.float32), dim=-1)
    return quat_to_matrix(axis_angle_quat(unit, torch.tensor([math.radians(degrees)])))[0]


def test_a_stretch_costs_its_length_and_a_rigid_motion_nothing():
    stretched = torch.tensor([[[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]]])  # [1, 2, 3]: the pair pulled to length 2
    assert rigidity_loss(PAIR, stretched, IDENTITY, *PAIR_GRAPH).item() == pytest.approx(1.0)
    assert isometry_loss(PAIR, stretched, *PAIR_GRAPH).item() == pytest.approx(1.0)
    assert arap_loss(PAIR, stretched, *PAIR_GRAPH).item() == pytest.approx(1.0)  # squared: 1^2

    turn = rotation([0.0, 0.0, 1.0], 90.0)  # the pair turned to point along +y, and moved
    moved = (PAIR @ turn.T + torch.tensor([0.3, -0.2, 0.5]))[None]
    assert rigidity_loss(PAIR, moved, turn.expand(1, 2, 3, 3), *PAIR_GRAPH).item() == pytest.approx(0.0, abs=1e-6)
    assert isometry_loss(PAIR, moved, *PAIR_GRAPH).item() == pytest.approx(0.0, abs=1e-6)
    assert arap_loss(PAIR, moved, *PAIR_GRAPH).item() == pytest.approx(0.0, abs=1e-10)
    # Rigidity holds the network's own rotations to account: unturned Gaussians whose offsets turned
    # pay |(0, 1, 0) - (1, 0, 0)| = sqrt 2 each; isometry and ARAP (which finds the turn itself) do not.
    assert rigidity_loss(PAIR, moved, IDENTITY, *PAIR_GRAPH).item() == pytest.approx(math.sqrt(2))


def test_arap_finds_the_best_rotation_before_measuring_stretch():
    turned_and_stretched = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 2.0, 0.0]]])  # turned 90 degrees, length 2
    assert arap_loss(PAIR, turned_and_stretched, *PAIR_GRAPH).item() == pytest.approx(1.0)  # |(0,2,0) - (0,1,0)|^2
    assert rigidity_loss(PAIR, turned_and_stretched, IDENTITY, *PAIR_GRAPH).item() == pytest.approx(math.sqrt(5))


def test_best_rotations_recover_a_rotation_and_never_reflect():
    generator = torch.Generator().manual_seed(0)
    rest = torch.randn(4, 6, 3, generator=generator)  # [M, K, 3]
    truth = rotation([1.0, 2.0, -0.5], 73.0)
    moved = torch.einsum("ij,mkj->mki", truth, rest)[None]  # [1, M, K, 3]
    recovered = best_rotations(rest, moved, torch.rand(4, 6, generator=generator) + 0.1)
    torch.testing.assert_close(recovered, truth.expand(1, 4, 3, 3), atol=1e-5, rtol=0)
    mirrored = moved * torch.tensor([1.0, 1.0, -1.0])  # a reflection is no rotation: det must stay +1
    assert torch.allclose(torch.linalg.det(best_rotations(rest, mirrored, torch.ones(4, 6))), torch.ones(1, 4))


def test_plane_priors_on_hand_made_planes():
    across = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])  # [1, 1, 2, 2]: steps of 1 along W only
    assert plane_total_variation([across]).item() == pytest.approx(2 * (0.0 + 1.0))
    assert plane_total_variation([across, across.transpose(2, 3)]).item() == pytest.approx(4.0)
    steady = torch.tensor([0.0, 1.0, 2.0])[None, None, :, None]  # [1, 1, T=3, 1]: constant velocity
    jerk = torch.tensor([0.0, 1.0, 4.0])[None, None, :, None]  # second difference 2
    assert time_smoothness([steady]).item() == 0.0
    assert time_smoothness([jerk, steady]).item() == pytest.approx(4.0)


def test_the_neighbour_graph_is_the_nearest_points_weighted_by_distance():
    points = torch.tensor([[0.0, 0, 0], [0.1, 0, 0], [0.3, 0, 0], [1.0, 0, 0]])
    indices, weights = neighbour_graph(points, 2)
    assert indices.tolist() == [[1, 2], [0, 2], [1, 0], [2, 1]]
    assert (weights > 0).all() and (weights <= 1).all()
    assert weights[0, 0] > weights[0, 1]  # closer, heavier
    scaled_indices, scaled_weights = neighbour_graph(points * 7.0, 2)  # the weights do not depend on scale
    assert torch.equal(scaled_indices, indices) and torch.allclose(scaled_weights, weights)


@pytest.mark.parametrize("network", ["hexplane", "sparse_control"])
def test_every_enabled_prior_reaches_the_deformation(network):
    small = {
        "hexplane": [
            "dynamic.deformation.resolution=[8,8,8,4]",
            "dynamic.loss.plane_tv=1",
            "dynamic.loss.time_smoothness=1",
        ],
        "sparse_control": ["dynamic.deformation.num_controls=16"],
    }
    config = compose_config([f"dynamic/deformation={network}", "dynamic.loss.rigidity=1", "dynamic.loss.isometry=1",
                             "dynamic.loss.arap=1", *small[network]])  # fmt: skip
    torch.manual_seed(0)
    canonical = {"means": torch.rand(64, 3) - 0.5, "quats": torch.nn.functional.normalize(torch.randn(64, 4), dim=-1)}
    deformation = build_deformation(network, config.dynamic.deformation, canonical["means"])
    with torch.no_grad():  # move away from the identity, where every prior is 0 with zero gradient
        for parameter in deformation.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    stage = term_host(config.dynamic, deformation, canonical)
    enabled = {
        name: weight
        for name, weight in config.dynamic.loss.items()
        if name not in ("ref_rgb", "ref_mask", "kml", "scl", "prior")
    }
    terms = build_terms(DYNAMIC_TERMS, stage, enabled)  # fmt: skip
    t = torch.tensor([-1.0, 0.5])
    means, quats, _ = deformation(canonical["means"], canonical["quats"], torch.zeros(64, 3), t)
    batch = DynamicBatch(None, None, None, t=t, deformed=[{"means": means[b], "quats": quats[b]} for b in range(2)])
    values = {name: term(batch) for name, term in terms.items()}
    assert set(values) == {name for name, weight in enabled.items() if weight > 0}
    assert all(torch.isfinite(value) and value > 0 for value in values.values())
    for name, value in values.items():
        deformation.zero_grad()
        value.backward(retain_graph=True)
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in deformation.parameters()), name


def term_host(settings, deformation, canonical):
    """What the motion terms read of a dynamic stage, from tensors: no earlier stage runs."""
    memo = {}
    return SimpleNamespace(
        name="dynamic", settings=settings, deformation=deformation, canonical_means=canonical["means"],
        model=SimpleNamespace(activated=lambda: canonical),
        memo=lambda key, make: memo[key] if key in memo else memo.setdefault(key, make()),
    )  # fmt: skip


def test_plane_priors_need_the_hexplane():
    with pytest.raises(SettingsError, match="use dynamic/deformation=hexplane"):
        validate_settings(compose_config(["experiment=synthetic", "dynamic/deformation=sparse_control",
                                          "dynamic.loss.time_smoothness=1"]))  # fmt: skip
    deformation = build_deformation("sparse_control", {"num_controls": 8}, torch.rand(20, 3))
    stage = term_host(compose_config([]).dynamic, deformation, {"means": torch.rand(20, 3)})
    with pytest.raises(DynaPoseError, match="hexplane"):
        build_terms(DYNAMIC_TERMS, stage, {"plane_tv": 1.0})


def test_a_run_with_every_prior_trains_and_logs_each(tiny_synthetic_config):
    from dynapose4d.pipeline import run

    run_dir = run(tiny_synthetic_config("dynamic/deformation=hexplane", "dynamic.deformation.resolution=[16,16,16,2]",
                                        "dynamic.loss.rigidity=100", "dynamic.loss.isometry=100",
                                        "dynamic.loss.arap=1000", "dynamic.loss.plane_tv=0.01",
                                        "dynamic.loss.time_smoothness=0.01"))  # fmt: skip
    header = (run_dir / "tb" / "dynamic" / "losses.csv").read_text().splitlines()[0].split(",")
    assert {f"loss/{name}" for name in ("rigidity", "isometry", "arap", "plane_tv", "time_smoothness")} <= set(header)
    assert (run_dir / "dynamic" / "DONE").exists()


def test_the_cost_benchmark_times_every_prior_on_a_tiny_base(tiny_synthetic_config):
    import subprocess
    import sys
    from pathlib import Path

    from dynapose4d.pipeline import run

    base = run(tiny_synthetic_config("stages=[static,video,keypoints]"))
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "motion_prior_cost.py"
    result = subprocess.run([sys.executable, str(script), "--base", str(base), "--steps", "1", "--repeats", "1"],
                            capture_output=True, text=True, check=True)  # fmt: skip
    rows = [line for line in result.stdout.splitlines() if line.startswith("| +")]
    # every term of terms/motion.py, by name as the registry lists them, then all together
    assert [row.split("|")[1].strip() for row in rows] == [
        "+arap", "+isometry", "+plane_tv", "+rigidity", "+time_smoothness", "+all"
    ]  # fmt: skip
    assert not (base / "dynamic").exists()  # the base is left as it was
