"""The torch rasteriser against references computed another way."""

import math

import pytest
import torch
from reference_render import dense_render

from dynapose4d.cameras import orbit_cameras
from dynapose4d.render import rasterize, resolve_backend

PARAM_NAMES = ("means", "quats", "scales", "opacities", "colors")


def random_scene(count: int, seed: int, spread: float = 0.8, dims: int = 3):
    generator = torch.Generator().manual_seed(seed)
    return {
        "means": (torch.rand(count, 3, generator=generator) - 0.5) * spread,
        "quats": torch.randn(count, 4, generator=generator),
        "scales": torch.rand(count, 3, generator=generator) * 0.08 + 0.01,
        "opacities": torch.rand(count, generator=generator) * 0.9 + 0.05,
        "colors": torch.rand(count, dims, generator=generator),
    }


def render(scene, cameras, **options):
    return rasterize(
        scene["means"], scene["quats"], scene["scales"], scene["opacities"], scene["colors"],
        cameras.viewmats, cameras.Ks, cameras.width, cameras.height, backend="torch", **options,
    )  # fmt: skip


def test_single_gaussian_matches_analytic_ewa_projection():
    """An isotropic Gaussian on the optical axis: footprint radius, peak and pixel count in closed form."""
    size, scale, opacity = 64, 0.05, 0.8
    cameras = orbit_cameras(0.0, 0.0, 2.0, 49.1, size, size)
    scene = {
        "means": torch.zeros(1, 3), "quats": torch.tensor([[1.0, 0, 0, 0]]),
        "scales": torch.full((1, 3), scale), "opacities": torch.tensor([opacity]), "colors": torch.ones(1, 3),
    }  # fmt: skip
    _, alphas, meta = render(scene, cameras)

    focal = cameras.Ks[0, 0, 0].item()
    variance = (scale * focal / 2.0) ** 2 + 0.3  # J Sigma J^T at depth 2, plus the low-pass
    extent = math.sqrt(2 * math.log(opacity * 255))
    assert meta["radii"][0, 0].tolist() == [math.ceil(extent * math.sqrt(variance))] * 2
    assert meta["means2d"][0, 0].tolist() == pytest.approx([size / 2, size / 2])

    centre_offset = 0.5  # the mean sits on a pixel corner; the nearest centres are 0.5 px away on both axes
    expected_peak = opacity * math.exp(-0.5 * 2 * centre_offset**2 / variance)
    assert alphas.max().item() == pytest.approx(expected_peak, rel=1e-5)

    coords = torch.arange(size) + 0.5 - size / 2
    squared = coords[:, None] ** 2 + coords[None, :] ** 2
    expected_pixels = (opacity * torch.exp(-0.5 * squared / variance) >= 1 / 255).sum().item()
    assert (alphas[0, ..., 0] > 0).sum().item() == expected_pixels


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("tile_size", [8, 16])
def test_values_and_gradients_match_dense_compositor(seed, tile_size):
    scene = random_scene(24, seed)
    cameras = orbit_cameras(torch.tensor([15.0, -20.0]), torch.tensor([30.0, 200.0]), 2.0, 49.1, 40, 36)
    for tensor in scene.values():
        tensor.requires_grad_(True)
    colors, alphas, _ = render(scene, cameras, render_mode="RGB+ED", tile_size=tile_size)

    generator = torch.Generator().manual_seed(100 + seed)
    loss = 0.0
    reference_loss = 0.0
    for index in range(len(cameras)):
        viewmat, K = cameras.viewmats[index], cameras.Ks[index]
        depth = scene["means"] @ viewmat[2, :3] + viewmat[2, 3]  # camera z of every Gaussian
        features = torch.cat([scene["colors"], depth[:, None]], dim=-1)
        ref_features, ref_alpha = dense_render(
            scene["means"], scene["quats"], scene["scales"], scene["opacities"], features, viewmat, K, 40, 36
        )
        ref_depth = ref_features[..., 3:] / ref_alpha.clamp_min(1e-10)
        torch.testing.assert_close(colors[index, ..., :3], ref_features[..., :3], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(alphas[index], ref_alpha, atol=1e-5, rtol=1e-4)
        covered = ref_alpha[..., 0] > 0.05  # expected depth is ill-conditioned where nothing is drawn
        torch.testing.assert_close(colors[index, covered, 3:], ref_depth[covered], atol=1e-4, rtol=1e-4)

        weights = torch.rand(36, 40, 5, generator=generator)
        loss = loss + (colors[index, ..., :3] * weights[..., :3]).sum() + (alphas[index] * weights[..., 3:4]).sum()
        loss = loss + (torch.where(covered[..., None], colors[index, ..., 3:], 0) * weights[..., 4:]).sum()
        reference_loss = reference_loss + (ref_features[..., :3] * weights[..., :3]).sum()
        reference_loss = reference_loss + (ref_alpha * weights[..., 3:4]).sum()
        reference_loss = reference_loss + (torch.where(covered[..., None], ref_depth, 0) * weights[..., 4:]).sum()

    grads = torch.autograd.grad(loss, list(scene.values()))
    reference_grads = torch.autograd.grad(reference_loss, list(scene.values()))
    for name, grad, reference in zip(PARAM_NAMES, grads, reference_grads):
        assert reference.abs().max() > 0, f"reference gradient for {name} is zero: the test would be vacuous"
        torch.testing.assert_close(grad, reference, atol=2e-4 * reference.abs().max().item(), rtol=1e-3, msg=name)


def test_early_stop_on_a_stack_of_opaque_gaussians():
    """Ten near-opaque Gaussians: T would drop below 1e-4 at the fourth, so it and all behind are skipped."""
    count = 10
    scene = {
        "means": torch.stack([torch.zeros(count), torch.zeros(count), torch.linspace(0.3, -0.3, count)], dim=-1),
        "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(count, 1),
        "scales": torch.full((count, 3), 0.2),
        "opacities": torch.full((count,), 0.99),
        "colors": torch.eye(count)[:, :count],
    }
    cameras = orbit_cameras(0.0, 0.0, 2.0, 49.1, 16, 16)
    colors, alphas, _ = render(scene, cameras)
    reference, reference_alpha = dense_render(*scene.values(), cameras.viewmats[0], cameras.Ks[0], 16, 16)
    torch.testing.assert_close(colors[0], reference, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(alphas[0], reference_alpha, atol=1e-6, rtol=1e-5)
    centre = colors[0, 8, 8]  # one colour channel per Gaussian, front (+z, nearest the camera) first
    assert centre[0] > centre[1] > centre[2] > 0
    assert torch.all(centre[3:] == 0)


def test_occlusion_follows_camera_depth_not_input_order():
    red_front = {
        "means": torch.tensor([[0.0, 0.0, 0.2], [0.0, 0.0, -0.2]]),
        "quats": torch.tensor([[1.0, 0, 0, 0], [1.0, 0, 0, 0]]),
        "scales": torch.full((2, 3), 0.15),
        "opacities": torch.tensor([0.95, 0.95]),
        "colors": torch.tensor([[1.0, 0, 0], [0, 0, 1.0]]),
    }
    swapped = {key: value.flip(0) for key, value in red_front.items()}
    cameras = orbit_cameras(torch.tensor([0.0, 0.0]), torch.tensor([0.0, 180.0]), 2.0, 49.1, 32, 32)
    for scene in (red_front, swapped):
        colors, _, _ = render(scene, cameras)
        assert colors[0, 16, 16, 0] > 0.9 and colors[0, 16, 16, 2] < 0.1  # seen from +z: red in front
        assert colors[1, 16, 16, 2] > 0.9 and colors[1, 16, 16, 0] < 0.1  # seen from -z: blue in front


@pytest.mark.parametrize(
    "means",
    [
        torch.zeros(0, 3),  # empty scene
        torch.tensor([[0.0, 0.0, 2.5], [0.1, 0.0, 3.0]]),  # behind the reference camera at z = 2
        torch.tensor([[5.0, 0.0, 0.0], [0.0, -4.0, 0.0]]),  # far outside the field of view
    ],
    ids=["empty", "behind", "offscreen"],
)
def test_nothing_visible_gives_background_and_finite_zero_gradients(means):
    count = means.shape[0]
    scene = {
        "means": means.clone().requires_grad_(True),
        "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(count, 1).requires_grad_(True),
        "scales": torch.full((count, 3), 0.05, requires_grad=True),
        "opacities": torch.full((count,), 0.9, requires_grad=True),
        "colors": torch.rand(count, 3).requires_grad_(True),
    }
    cameras = orbit_cameras(0.0, 0.0, 2.0, 49.1, 24, 24)
    background = torch.tensor([[0.2, 0.4, 0.6]])
    colors, alphas, meta = render(scene, cameras, backgrounds=background)
    assert torch.all(alphas == 0)
    assert torch.allclose(colors, background.expand(24, 24, 3)[None])
    assert torch.all(meta["radii"] == 0)
    (colors.sum() + alphas.sum()).backward()
    for tensor in scene.values():
        assert tensor.grad is not None and torch.all(tensor.grad == 0)


def test_background_fills_the_uncovered_fraction():
    scene = random_scene(12, 5)
    cameras = orbit_cameras(0.0, 45.0, 2.0, 49.1, 32, 32)
    background = torch.tensor([[0.3, 0.1, 0.9]])
    plain, alphas, _ = render(scene, cameras)
    composited, _, _ = render(scene, cameras, backgrounds=background)
    torch.testing.assert_close(composited, plain + (1 - alphas) * background[:, None, None, :])


def test_spherical_harmonics_degree_one_matches_hand_computation():
    scene = random_scene(6, 3)
    coefficients = torch.randn(6, 4, 3) * 0.3
    cameras = orbit_cameras(0.0, 90.0, 2.0, 49.1, 32, 32)  # camera on +x
    sh_colors, _, _ = rasterize(
        scene["means"], scene["quats"], scene["scales"], scene["opacities"], coefficients,
        cameras.viewmats, cameras.Ks, 32, 32, sh_degree=1, backend="torch",
    )  # fmt: skip
    direction = torch.nn.functional.normalize(scene["means"] - torch.tensor([2.0, 0.0, 0.0]), dim=-1)
    x, y, z = direction.unbind(-1)
    c0, c1 = 0.28209479177387814, 0.4886025119029199
    expected = c0 * coefficients[:, 0] - c1 * y[:, None] * coefficients[:, 1]
    expected = expected + c1 * z[:, None] * coefficients[:, 2] - c1 * x[:, None] * coefficients[:, 3]
    expected = (expected + 0.5).clamp_min(0)
    direct, _, _ = rasterize(
        scene["means"], scene["quats"], scene["scales"], scene["opacities"], expected,
        cameras.viewmats, cameras.Ks, 32, 32, backend="torch",
    )  # fmt: skip
    torch.testing.assert_close(sh_colors, direct)


def test_means2d_gradient_is_available_for_densification():
    scene = random_scene(20, 7)
    scene["means"].requires_grad_(True)
    cameras = orbit_cameras(torch.tensor([0.0, 10.0]), torch.tensor([0.0, 90.0]), 2.0, 49.1, 32, 32)
    colors, _, meta = render(scene, cameras)
    meta["means2d"].retain_grad()
    colors.sum().backward()
    assert meta["means2d"].grad.shape == (2, 20, 2)
    visible = meta["radii"][..., 0] > 0
    assert meta["means2d"].grad[visible].abs().sum() > 0
    assert torch.all(meta["means2d"].grad[~visible] == 0)


def test_auto_backend_falls_back_to_torch_on_cpu():
    assert resolve_backend("auto", torch.device("cpu")) == "torch"
    with pytest.raises(RuntimeError, match="render.backend=torch"):
        resolve_backend("gsplat", torch.device("cpu"))


@pytest.mark.gpu
@pytest.mark.parametrize("count", [64, 2048, 16384])
def test_torch_backend_matches_gsplat_on_cuda(count):
    if resolve_backend("auto", torch.device("cuda")) != "gsplat":
        pytest.skip("gsplat CUDA kernels unavailable")
    scene = {key: value.cuda().requires_grad_(True) for key, value in random_scene(count, 11, spread=1.0).items()}
    scene["scales"] = (scene["scales"].detach() * 0.3).requires_grad_(True)
    cameras = orbit_cameras(torch.tensor([0.0, 20.0]), torch.tensor([0.0, 120.0]), 2.0, 49.1, 128, 96).to("cuda")
    outputs = {}
    for backend in ("torch", "gsplat"):
        colors, alphas, meta = rasterize(
            *scene.values(), cameras.viewmats, cameras.Ks, 128, 96, render_mode="RGB+ED", backend=backend
        )
        grads = torch.autograd.grad(colors[..., :3].sum() + alphas.sum(), list(scene.values()))
        outputs[backend] = (colors, alphas, meta["radii"], grads)
    torch_out, gsplat_out = outputs["torch"], outputs["gsplat"]
    torch.testing.assert_close(torch_out[0][..., :3], gsplat_out[0][..., :3], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(torch_out[1], gsplat_out[1], atol=1e-4, rtol=1e-4)
    assert torch.equal(torch_out[2], gsplat_out[2].to(torch_out[2].dtype))
    for name, mine, theirs in zip(PARAM_NAMES, torch_out[3], gsplat_out[3]):
        torch.testing.assert_close(mine, theirs, atol=1e-3 * theirs.abs().max().item(), rtol=1e-3, msg=name)
