"""Deformation fields: identity at init, gradient flow, exact rigid skinning, fitting a toy motion."""

import math

import pytest
import torch
from omegaconf import OmegaConf

from dynapose4d.deform import build_deformation, normalised_time
from dynapose4d.deform.hexplane import TIME_PLANE_JITTER
from dynapose4d.deform.sparse_control import farthest_point_sampling
from dynapose4d.errors import DynaPoseError
from dynapose4d.geometry import axis_angle_quat, quat_multiply, quat_to_matrix

# Small but complete: two resolutions, a hidden layer, fewer controls than points.
TINY = {
    "hexplane": {"resolution": [8, 8, 8, 4], "multires": [1, 2], "feature_dim": 8, "width": 32, "depth": 2},
    "sparse_control": {"num_controls": 32, "k_neighbors": 4, "width": 32, "depth": 3, "pos_freqs": 4, "time_freqs": 3},
}
NAMES = sorted(TINY)


def canonical(n: int = 300, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random canonical Gaussians: means [n, 3] in a ball of radius ~0.5, unit quats [n, 4], log-scales [n, 3]."""
    g = torch.Generator().manual_seed(seed)
    means = 0.3 * torch.randn(n, 3, generator=g)
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1)
    log_scales = torch.randn(n, 3, generator=g) - 4.0
    return means, quats, log_scales


def make(name: str, means: torch.Tensor, seed: int = 0):
    torch.manual_seed(seed)
    return build_deformation(name, TINY[name], means)


def test_normalised_time_endpoints():
    t = normalised_time(torch.tensor([0, 7.5, 15]), 16)
    assert torch.equal(t, torch.tensor([-1.0, 0.0, 1.0]))
    assert torch.equal(normalised_time(torch.tensor([0]), 1), torch.tensor([0.0]))


@pytest.mark.parametrize("name", NAMES)
def test_identity_at_init(name):
    means, quats, log_scales = canonical()
    deformation = make(name, means)
    t = torch.tensor([-1.0, -0.3, 0.5, 1.0])
    new_means, new_quats, new_log_scales = deformation(means, quats, log_scales, t)
    assert new_means.shape == (4, 300, 3) and new_quats.shape == (4, 300, 4) and new_log_scales.shape == (4, 300, 3)
    # Bit-for-bit: the zero heads add exact zeros and compose with the exact identity quaternion.
    assert torch.equal(new_means, means.expand(4, -1, -1))
    assert torch.equal(new_quats, quats.expand(4, -1, -1))
    assert torch.equal(new_log_scales, log_scales.expand(4, -1, -1))


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name):
    """The zero last layers block gradients to everything before them on the first step only."""
    means, quats, log_scales = canonical()
    deformation = make(name, means)
    g = torch.Generator().manual_seed(1)
    t = torch.tensor([-0.5, 0.7])
    targets = [torch.randn(2, *x.shape, generator=g) for x in (means, quats, log_scales)]
    optimizer = torch.optim.Adam(deformation.parameters(), lr=1e-2)
    for _ in range(2):
        optimizer.zero_grad()
        outputs = deformation(means, quats, log_scales, t)
        sum((out - target).square().mean() for out, target in zip(outputs, targets)).backward()
        optimizer.step()
    for param_name, param in deformation.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, param_name


def test_hexplane_planes_at_init():
    deformation = make("hexplane", canonical()[0])
    assert len(deformation.planes) == 12  # 6 planes x 2 resolutions
    for key, plane in deformation.planes.items():
        if key.endswith("t"):
            assert (plane - 1).abs().max() <= TIME_PLANE_JITTER and plane.std() > 0, key  # about 1, not exactly
        else:
            assert plane.min() >= 0.1 and plane.max() <= 0.5, key
    assert deformation.planes["2_xy"].shape == (1, 8, 16, 16)
    assert deformation.planes["2_xt"].shape == (1, 8, 4, 16)  # time keeps its resolution at every scale
    planes, mlp = deformation.param_groups(1e-3)
    assert planes["lr"] == pytest.approx(1e-2) and len(planes["params"]) == 12 and mlp["lr"] == 1e-3
    assert len(planes["params"]) + len(mlp["params"]) == len(list(deformation.parameters()))


def test_sparse_control_skinning_reproduces_a_rigid_motion():
    """A global motion x -> R x + d is, about control c_k, the rotation R with translation T_k = R c_k + d - c_k."""
    means, quats, log_scales = canonical()
    deformation = make("sparse_control", means)
    axes = torch.nn.functional.normalize(torch.tensor([[0.3, 1.0, -0.2], [-1.0, 0.5, 0.4]]), dim=-1)
    q_global = axis_angle_quat(axes, torch.tensor([0.8, -2.5]))  # [B, 4]
    rotation = quat_to_matrix(q_global)  # [B, 3, 3]
    shift = torch.tensor([[0.1, -0.2, 0.3], [0.0, 0.4, -0.1]])  # [B, 3]
    controls = deformation.controls.detach()  # [M, 3]
    m = controls.shape[0]

    def rigid_motion(t):
        translations = torch.einsum("bij,mj->bmi", rotation, controls) + shift[:, None] - controls  # [B, M, 3]
        return q_global[:, None].expand(-1, m, -1), translations

    deformation.control_motion = rigid_motion
    new_means, new_quats, new_log_scales = deformation(means, quats, log_scales, torch.tensor([0.0, 1.0]))
    expected_means = torch.einsum("bij,nj->bni", rotation, means) + shift[:, None]
    torch.testing.assert_close(new_means, expected_means, atol=1e-5, rtol=0)
    torch.testing.assert_close(new_quats, quat_multiply(q_global[:, None], quats), atol=1e-5, rtol=0)
    assert torch.equal(new_log_scales, log_scales.expand(2, -1, -1))
    # A lone point (a keypoint) moves exactly like a Gaussian at the same place.
    points = deformation.deform_points(means[:5], torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(points, expected_means[:, :5], atol=1e-5, rtol=0)


def toy_offset(t: torch.Tensor) -> torch.Tensor:
    """A time-dependent translation [B, 3] of the whole cloud at times `t` [B]."""
    return torch.stack([0.2 * t, 0.1 * torch.sin(math.pi * t), -0.1 * t**2], dim=-1)


def clip_loss(deformation, means, quats, log_scales) -> float:
    """Mean squared error to the toy motion over all 16 frames."""
    t = normalised_time(torch.arange(16), 16)  # [16]
    new_means = deformation(means, quats, log_scales, t)[0]
    return (new_means - means - toy_offset(t)[:, None]).square().mean().item()


@pytest.mark.parametrize("name", NAMES)
def test_fits_a_time_dependent_translation(name):
    """150 Adam steps on batches of 4 random frames cut the whole-clip error more than 10x.

    With `param_groups`, so the hexplane's planes learn 10x faster than its MLPs (at
    one rate for all, either the planes barely move or the heads' ReLUs die).
    """
    means, quats, log_scales = canonical()
    deformation = make(name, means)
    optimizer = torch.optim.Adam(deformation.param_groups(3e-3))
    g = torch.Generator().manual_seed(2)
    before = clip_loss(deformation, means, quats, log_scales)
    for _ in range(150):
        t = normalised_time(torch.randint(0, 16, (4,), generator=g), 16)  # [4]
        new_means = deformation(means, quats, log_scales, t)[0]
        loss = (new_means - means - toy_offset(t)[:, None]).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = clip_loss(deformation, means, quats, log_scales)
    assert after < before / 10, (before, after)
    moved = deformation.motion_points(means, torch.tensor([-1.0, 1.0]))  # [2, M, 3]
    assert (moved[1] - moved[0]).norm(dim=-1).mean() > 0.2  # the ends of the clip are 0.4 apart in x


def test_motion_points_shapes():
    means = canonical()[0]
    t = torch.tensor([-1.0, 0.0, 1.0])
    hexplane = make("hexplane", means)
    assert torch.equal(hexplane.motion_points(means, t), means.expand(3, -1, -1))
    sparse = make("sparse_control", means)
    assert torch.equal(sparse.motion_points(means, t), sparse.controls.detach().expand(3, -1, -1))
    assert sparse.motion_points(means, t).shape == (3, 32, 3)
    assert make("sparse_control", means[:20]).motion_points(means[:20], t).shape == (3, 20, 3)  # N < M: all points


def test_farthest_point_sampling_is_deterministic_and_spread():
    points = canonical(500)[0]
    indices = farthest_point_sampling(points, 32)
    assert torch.equal(indices, farthest_point_sampling(points, 32))
    assert indices.unique().numel() == 32
    assert indices[0] == (points - points.mean(dim=0)).norm(dim=-1).argmin()
    # Every point is closer to the sample than the sample's points are to each other (FPS's covering property).
    sample = points[indices]
    spacing = torch.cdist(sample, sample).fill_diagonal_(math.inf).min()
    assert torch.cdist(points, sample).min(dim=1).values.max() <= spacing


def test_build_deformation_reads_a_config_group():
    means = canonical()[0]
    settings = OmegaConf.create({"name": "hexplane", **TINY["hexplane"]})  # as dynamic.deformation holds it
    hexplane = build_deformation("hexplane", settings, means)
    assert hexplane.planes["1_xy"].shape == (1, 8, 8, 8)
    with pytest.raises(DynaPoseError, match="unknown deformation .mlp.; choose one of hexplane, skeleton, sparse_c"):
        build_deformation("mlp", {}, means)
    with pytest.raises(TypeError, match="lr_grid"):  # no key is dropped silently: the schema names it first
        build_deformation("hexplane", {**TINY["hexplane"], "lr_grid": 6.4e-3}, means)
