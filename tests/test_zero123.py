"""Zero123 loading and SDS with tiny random components saved in the hub repos' layout."""

import json

import pytest
import torch
from conftest import compose_config, local_weights
from omegaconf import OmegaConf

from dynapose4d.cameras import sample_orbit_cameras
from dynapose4d.errors import DynaPoseError
from dynapose4d.gaussians import GaussianModel
from dynapose4d.pretrained.zero123 import load_zero123
from dynapose4d.pretrained.zero123_random import write_random_zero123
from dynapose4d.priors import PriorContext, ViewBatch, build_prior, prior_weights
from dynapose4d.priors.zero123 import ZERO123_MODELS, Zero123Prior
from dynapose4d.render import rasterize

CPU = torch.device("cpu")


def reference_image(size: int = 64) -> torch.Tensor:
    """An RGBA disc [S, S, 4] with a colour gradient."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    alpha = ((xs**2 + ys**2) < 0.5).float()
    return torch.stack([(xs + 1) / 2, (ys + 1) / 2, torch.full_like(xs, 0.3), alpha], dim=-1)


def random_views(count: int, size: int, seed: int = 0) -> ViewBatch:
    cameras, elevations, azimuths = sample_orbit_cameras(
        count, torch.Generator().manual_seed(seed), width=size, height=size
    )
    return ViewBatch(cameras, elevations, azimuths, 2.0)


def make_prior(directory, guidance_scale: float = 5.0, stable: bool = False) -> Zero123Prior:
    components = load_zero123(directory, CPU, torch.float32)
    return Zero123Prior(components, reference_image()[None], guidance_scale, (0.98, 0.02), stable)


def test_repo_layout_loads_back_with_either_projection_format(tiny_zero123_dir, tmp_path):
    index = json.loads((tiny_zero123_dir / "model_index.json").read_text())
    assert index["clip_camera_projection"] == ["zero123", "CLIPCameraProjection"]
    kxic = write_random_zero123(tmp_path / "kxic", projection_folder="cc_projection")  # same seed, same weights
    ours, theirs = load_zero123(tiny_zero123_dir, CPU, torch.float32), load_zero123(kxic, CPU, torch.float32)
    torch.testing.assert_close(ours.projection.proj.weight, theirs.projection.proj.weight, rtol=0, atol=0)
    assert ours.image_size == 256  # 32 latents x 8
    assert not any(parameter.requires_grad for parameter in ours.unet.parameters())


def test_a_folder_that_is_not_a_zero123_repo_is_named_in_the_error(tmp_path):
    with pytest.raises(DynaPoseError, match="no unet, vae, image_encoder"):
        load_zero123(tmp_path, CPU, torch.float32)


def test_a_damaged_download_is_named_with_how_to_fetch_it_again(tiny_zero123_dir, tmp_path):
    import shutil

    copy = shutil.copytree(tiny_zero123_dir, tmp_path / "zero123")
    weights = copy / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # cut short, as an interrupted copy leaves it
    with pytest.raises(DynaPoseError, match=f"cannot load Zero123 from {copy} .*delete that folder"):
        load_zero123(copy, CPU, torch.float32)


def test_timestep_anneals_linearly_from_098_to_002(tiny_zero123_dir):
    prior = make_prior(tiny_zero123_dir)
    assert [prior.timestep(ratio) for ratio in (0.0, 0.5, 1.0, 2.0)] == [980, 500, 20, 20]


def test_sds_gradient_is_the_weighted_guided_noise_residual_pulled_through_the_vae(tiny_zero123_dir):
    """Reference: the two CFG branches as two separate UNet calls, the VJP taken by hand."""
    prior = make_prior(tiny_zero123_dir, guidance_scale=3.0)
    views = random_views(2, 64)
    views.noise_seeds = torch.tensor([11, 12])
    colors = torch.rand(2, 64, 64, 3, requires_grad=True)
    alphas = torch.rand(2, 64, 64, 1)

    prior.loss(colors, alphas, views, step_ratio=0.25).backward()

    components, t = prior.components, prior.timestep(0.25)
    # Each view draws its posterior sample, then its diffusion noise, from a generator seeded with its seed.
    generators = [torch.Generator().manual_seed(seed) for seed in (11, 12)]
    # The renders go in as rendered, over their own backgrounds (DreamGaussian's random black or white).
    images = torch.nn.functional.interpolate(colors.permute(0, 3, 1, 2), (256, 256), mode="bilinear")
    posterior = components.vae.encode(images * 2 - 1).latent_dist
    shape = posterior.mean.shape[1:]
    sample = torch.stack([torch.randn(shape, generator=generator) for generator in generators])
    latents = (posterior.mean + posterior.std * sample) * 0.18215
    noise = torch.stack([torch.randn(shape, generator=generator) for generator in generators])
    alpha_bar = components.scheduler.alphas_cumprod[t]
    noisy = alpha_bar.sqrt() * latents.detach() + (1 - alpha_bar).sqrt() * noise
    with torch.no_grad():
        tokens = prior.camera_tokens(views)
        conditional = components.unet(
            torch.cat([noisy, prior.image_latents[[0, 0]]], 1), t, encoder_hidden_states=tokens
        ).sample
        unconditional = components.unet(
            torch.cat([noisy, torch.zeros_like(noisy)], 1), t, encoder_hidden_states=torch.zeros_like(tokens)
        ).sample
    residual = (1 - alpha_bar) * (unconditional + 3.0 * (conditional - unconditional) - noise)
    (expected,) = torch.autograd.grad(latents, colors, residual / 2)
    # Batched and separate UNet calls round differently: compare at 1e-3 of the gradient's scale.
    torch.testing.assert_close(colors.grad, expected, rtol=1e-3, atol=1e-3 * expected.abs().max().item())
    assert colors.grad.abs().sum() > 0


def test_stable_zero123_conditions_on_the_reference_polar_angle(tiny_zero123_dir):
    views = random_views(3, 32)
    plain, stable = make_prior(tiny_zero123_dir), make_prior(tiny_zero123_dir, stable=True)
    assert not torch.allclose(plain.camera_tokens(views), stable.camera_tokens(views))


def test_camera_vector_is_relative_to_the_stage_reference_view(tiny_zero123_dir, monkeypatch):
    """At static.camera.radius=2.5 a novel view at the same distance has Δradius 0 (it used to get 0.5),
    and a photo taken from 20° above shifts Δpolar by the reference elevation."""
    settings = compose_config(["static.camera.radius=2.5", "elevation=20", f"static.model={tiny_zero123_dir}"]).static
    prior = build_prior(PriorContext(settings, "static", reference_image()[None], settings.camera, CPU))
    seen = []
    monkeypatch.setattr(prior.components, "projection", lambda joined: seen.append(joined[:, 0, -4:]) or joined)
    prior.camera_tokens(
        ViewBatch(random_views(2, 32).cameras, torch.tensor([20.0, 50.0]), torch.tensor([0.0, 90.0]), 2.5)
    )
    (vector,) = seen  # [2, 4]: Δpolar, sin Δazimuth, cos Δazimuth, Δradius
    torch.testing.assert_close(vector[:, 3], torch.zeros(2))
    torch.testing.assert_close(vector[:, 0], torch.deg2rad(torch.tensor([0.0, -30.0])))
    torch.testing.assert_close(vector[:, 1:3], torch.tensor([[0.0, 1.0], [1.0, 0.0]]), atol=1e-6, rtol=0)


def test_sds_gradient_reaches_every_gaussian_parameter(tiny_zero123_dir):
    prior = make_prior(tiny_zero123_dir)
    model = GaussianModel.from_sphere(200, 0.5, torch.Generator().manual_seed(0))
    with torch.no_grad():  # anisotropic, so that rotations change the render
        model.params["scales"] += torch.rand(model.params["scales"].shape, generator=torch.Generator().manual_seed(1))
    views = random_views(2, 32)
    colors, alphas, _ = rasterize(
        **model.activated(), viewmats=views.cameras.viewmats, Ks=views.cameras.Ks, width=32, height=32,
        backgrounds=torch.zeros(2, 3), backend="torch",
    )  # fmt: skip
    prior.loss(colors, alphas, views, step_ratio=0.1).backward()
    for name, parameter in model.params.items():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_build_prior_loads_the_configured_directory(tiny_zero123_dir):
    settings = compose_config(["static.prior=stable_zero123", f"static.model={tiny_zero123_dir}"]).static
    prior = build_prior(PriorContext(settings, "static", reference_image()[None], settings.camera, CPU))
    assert isinstance(prior, Zero123Prior) and prior.stable and prior.guidance_scale == settings.sds.guidance_scale
    assert prior_weights(settings, "static")[0].location == str(tiny_zero123_dir)


def test_offline_without_a_local_copy_names_the_repo_the_key_and_the_licence(offline_hub):
    settings = compose_config(["static.prior=stable_zero123"]).static
    with pytest.raises(DynaPoseError) as error:
        build_prior(PriorContext(settings, "static", reference_image()[None], settings.camera, CPU))
    message = str(error.value)
    assert "ashawkey/stable-zero123-diffusers" in message and "static.model=" in message
    assert "Non-Commercial" in message


@pytest.mark.weights
@pytest.mark.parametrize("name", sorted(ZERO123_MODELS))
def test_real_zero123_sds_step(name):
    """With the real weights: conditioning shapes as published, and a finite, non-zero SDS gradient."""
    directory = local_weights(ZERO123_MODELS[name])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    settings = OmegaConf.create({"prior": name, "model": str(directory), "sds": compose_config([]).static.sds})
    prior = build_prior(
        PriorContext(settings, "static", reference_image(256)[None], compose_config([]).static.camera, device)
    )
    assert prior.image_embeddings.shape == (1, 768) and prior.image_latents.shape == (1, 4, 32, 32)
    colors = torch.rand(2, 256, 256, 3, device=device, requires_grad=True)
    prior.loss(colors, torch.ones(2, 256, 256, 1, device=device), random_views(2, 256), 0.5).backward()
    assert torch.isfinite(colors.grad).all() and colors.grad.abs().sum() > 0


def test_each_view_is_conditioned_on_its_own_frame(tiny_zero123_dir):
    """A two-frame prior gives a frame-1 view the token a prior built on frame 1 alone gives it."""
    components = load_zero123(tiny_zero123_dir, CPU, torch.float32)
    first, second = reference_image(), reference_image().flip(1)
    both = Zero123Prior(components, torch.stack([first, second]), 5.0, (0.98, 0.02), False)
    alone = Zero123Prior(components, second[None], 5.0, (0.98, 0.02), False)
    views = random_views(2, 32)
    views.frames = torch.tensor([1, 1])
    torch.testing.assert_close(both.camera_tokens(views), alone.camera_tokens(random_views(2, 32)))
    on_first = both.camera_tokens(ViewBatch(views.cameras, views.elevations, views.azimuths, 2.0, torch.tensor([0, 0])))
    assert not torch.allclose(on_first[1], both.camera_tokens(views)[1])
