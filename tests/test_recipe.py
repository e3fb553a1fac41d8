"""The real-weight defaults follow DreamGaussian (static) and DreamGaussian4D (dynamic).

Every expected number here is written from the reference code, not from our configs:
DreamGaussian `configs/image.yaml`, `image_sai.yaml`, `main.py`, `gs_renderer.py`;
DreamGaussian4D `configs/4d.yaml`, `main_4d.py`, `gaussian_model_4d.py`. A default that
drifts from them fails here.
"""

import math

import numpy as np
import pytest
import torch
from conftest import compose_config

from dynapose4d.cameras import orbit_cameras
from dynapose4d.densify import Densifier
from dynapose4d.gaussians import GaussianModel
from dynapose4d.pipeline import run
from dynapose4d.render import rasterize
from dynapose4d.run import Run, resolve_device
from dynapose4d.schedules import reference_warmup, render_size
from dynapose4d.stages import static
from dynapose4d.stages.training import reference_warmup_enabled


def dreamgaussian_expon_lr(step, lr_init, lr_final, max_steps, lr_delay_steps=0, lr_delay_mult=1.0):
    """3DGS's get_expon_lr_func, restated: log-linear interpolation, with an optional delay ramp."""
    if lr_init == lr_final:
        return lr_init
    delay = 1.0
    if lr_delay_steps > 0:
        delay = lr_delay_mult + (1 - lr_delay_mult) * np.sin(0.5 * np.pi * np.clip(step / lr_delay_steps, 0, 1))
    t = np.clip(step / max_steps, 0, 1)
    return delay * np.exp(np.log(lr_init) * (1 - t) + np.log(lr_final) * t)


def learning_rates(optimizers) -> dict[str, float]:
    return {
        group.get("name", key): group["lr"] for key, optimizer in optimizers.items() for group in optimizer.param_groups
    }


# ----- static stage: DreamGaussian -------------------------------------------------------------


def test_static_learning_rates_per_group_at_start_middle_and_end(tiny_synthetic_config):
    iterations = 10
    config = tiny_synthetic_config("stages=[]", f"static.iterations={iterations}", "static.densify.start=1000")
    trainer = static.StaticStage.from_run(Run(config, run(config), resolve_device("cpu")))  # run(): inputs only
    seen = {}
    for step in range(iterations):
        trainer.train_step()  # its rates stay in the optimizers after the step that used them
        seen[step] = {key: value for key, value in learning_rates(trainer.optimizers).items()}
    for step in (0, iterations // 2, iterations - 1):
        # DreamGaussian: step counts from 1; position 1e-3 -> 2e-5 times spatial_lr_scale 10 over `iters`.
        expected_means = dreamgaussian_expon_lr(step + 1, 1e-3 * 10, 2e-5 * 10, iterations, 0, 0.02)
        assert seen[step]["means"] == pytest.approx(expected_means, rel=1e-9)
        assert seen[step]["sh0"] == 0.01 and seen[step]["opacities"] == 0.05
        assert seen[step]["scales"] == 0.005 and seen[step]["quats"] == 0.005
    assert seen[iterations - 1]["means"] == pytest.approx(2e-4, rel=1e-12)


def test_reference_loss_warmup_is_on_for_zero123_xl_and_off_for_stable_zero123():
    def enabled(*overrides):
        return reference_warmup_enabled(compose_config(list(overrides)).static)

    assert enabled() and enabled("static.prior=zero123")  # image.yaml: warmup_rgb_loss True
    assert not enabled("static.prior=stable_zero123")  # image_sai.yaml: warmup_rgb_loss False
    assert enabled("static.prior=stable_zero123", "static.ref_warmup=true")
    # The factor is DreamGaussian's step_ratio = step / iters with steps counted from 1.
    assert [reference_warmup(s, 500, True) for s in (0, 249, 499)] == [1 / 500, 0.5, 1.0]
    assert reference_warmup(0, 500, False) == 1.0


def test_static_novel_views_grow_128_256_512_and_the_reference_stays_at_256():
    settings = compose_config([]).static
    assert settings.render_size == 256  # DreamGaussian's ref_size
    iterations = settings.iterations
    # main.py: 128 if step_ratio < 0.3 else (256 if step_ratio < 0.6 else 512), step_ratio = step / iters
    for step in range(iterations):
        ratio = (step + 1) / iterations
        expected = 128 if ratio < 0.3 else (256 if ratio < 0.6 else 512)
        assert render_size(step, iterations, settings.novel_view_sizes) == expected, step


def test_novel_views_render_at_the_scheduled_size_over_black_half_the_time(tiny_synthetic_config):
    config = tiny_synthetic_config("stages=[]", "static.iterations=4", "static.novel_view_sizes=[[0,24],[0.5,40]]")
    trainer = static.StaticStage.from_run(Run(config, run(config), resolve_device("cpu")))
    assert trainer.settings.black_background_prob == 0.5  # DreamGaussian's invert_bg_prob
    shapes = []
    original = trainer.prior.loss
    trainer.prior.loss = lambda colors, *rest: shapes.append(tuple(colors.shape[1:3])) or original(colors, *rest)
    for _ in range(4):
        trainer.train_step()
    assert shapes == [(24, 24), (40, 40), (40, 40), (40, 40)]  # step ratios 1/4, 2/4, 3/4, 4/4

    draws = torch.cat([trainer.sample_views().backgrounds for _ in range(500)])  # [500 B, 3]
    assert set(draws.unique().tolist()) == {0.0, 1.0} and (draws == draws[:, :1]).all()  # black or white
    black = (draws[:, 0] == 0).float().mean().item()
    assert abs(black - 0.5) < 4 * math.sqrt(0.25 / len(draws))  # 4 sigma of a fair coin


# ----- densification --------------------------------------------------------------------------


def dreamgaussian_densify_and_prune(grads, scales, opacities, threshold, percent_dense, extent, min_opacity):
    """The fate of each Gaussian under DreamGaussian's densify_and_prune (gs_renderer.py), restated.

    Returns how many copies of each input Gaussian survive: 2 when cloned, 2 children when
    split (the parent is removed), 1 when kept, 0 when pruned. The prune test runs after
    the growth, on parents and copies alike; children of a split get scale / 1.6.
    """
    largest = scales.max(dim=-1).values
    grown = grads >= threshold
    clone, split = grown & (largest <= percent_dense * extent), grown & (largest > percent_dense * extent)
    too_large = lambda size: size > 0.1 * extent  # noqa: E731  (max_screen_size never fires: 3DGS's bug)
    survives = (opacities >= min_opacity).long()  # all copies share the parent's opacity
    copies = torch.where(clone, 2, 1) * survives * (~too_large(largest)).long()
    children = 2 * survives * (~too_large(largest / 1.6)).long()
    return torch.where(split, children, copies)


def test_densification_decisions_match_dreamgaussian_on_a_fixed_gradient_statistic():
    settings = compose_config([]).static.densify
    assert (settings.start, settings.every, settings.grad_threshold) == (100, 100, 0.01)
    assert (settings.percent_dense, settings.extent, settings.min_opacity) == (0.01, 4.0, 0.01)
    densifier = Densifier.from_dreamgaussian(**{**settings, "stop": 500})
    # Sizes around the clone/split cut (0.04) and the prune cut (0.4); gradients around 0.01.
    sizes = torch.tensor([0.01, 0.039, 0.041, 0.2, 0.5, 0.63, 0.7, 0.02, 0.3, 0.05, 0.03, 0.41])
    grads = torch.tensor([0.02, 0.011, 0.012, 0.5, 0.02, 0.02, 0.02, 0.009, 0.0, 0.03, 0.05, 0.0])
    opacities = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.005, 0.5])
    n = len(sizes)
    model = GaussianModel(
        {
            "means": torch.zeros(n, 3), "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
            "scales": sizes.log()[:, None].repeat(1, 3), "opacities": torch.logit(opacities),
            "sh0": torch.zeros(n, 1, 3), "tag": torch.arange(float(n)),
        }
    )  # fmt: skip
    model.params["tag"].requires_grad_(False)
    optimizers = model.make_optimizers({"means": 0.0, "quats": 0.0, "scales": 0.0, "opacities": 0.0, "sh0": 0.0})
    # One camera of 64 px: a pixel gradient g gives gsplat's statistic g * 32 (x W/2, C = 1).
    means2d = torch.zeros(1, n, 2, requires_grad=True)
    info = {"means2d": means2d, "radii": torch.full((1, n, 2), 3), "width": 64, "height": 64, "n_cameras": 1,
            "gaussian_ids": None}  # fmt: skip
    densifier.step_pre_backward(model, optimizers, 100, info)
    (means2d[0, :, 0] * grads / 32).sum().backward()
    densifier.step_post_backward(model, optimizers, 100, info)  # DreamGaussian's step 100: densify

    expected = dreamgaussian_densify_and_prune(
        grads, sizes[:, None].repeat(1, 3), opacities, 0.01, 0.01, 4.0, 0.01
    )  # fmt: skip
    counts = torch.bincount(model.params["tag"].long(), minlength=n)
    assert counts.tolist() == expected.tolist()
    # Every branch is exercised: clone (0, 1), split (2-5, 9), split children too large (6),
    # kept (7, 8), transparent (10), too large (11).
    assert expected.tolist() == [2, 2, 2, 2, 2, 2, 0, 1, 1, 2, 0, 0]


def test_dreamgaussian_gradient_threshold_needs_no_factor_for_a_loss_averaged_over_views():
    """gsplat's statistic over C views of an averaged loss = DreamGaussian's NDC gradient of each view alone."""
    size, count = 40, 3
    cameras = orbit_cameras(
        torch.tensor([0.0, 20.0, -10.0]), torch.tensor([0.0, 100.0, 230.0]), width=size, height=size
    )
    model = GaussianModel.from_sphere(80, 0.4, torch.Generator().manual_seed(0))
    optimizers = model.make_optimizers({"means": 1e-3, "quats": 1e-3, "scales": 1e-3, "opacities": 1e-3, "sh0": 1e-3})
    weights = torch.rand(count, size, size, 3, generator=torch.Generator().manual_seed(1))  # each view's own loss

    def view_loss(colors, view):  # [H, W, 3] -> scalar
        return (colors * weights[view]).sum()

    # DreamGaussian: each view rendered alone with weight 1; |d loss / d NDC| = |d loss / d pixel * (W/2, H/2)|.
    expected_sum, expected_count = torch.zeros(80), torch.zeros(80)
    for view in range(count):
        alone = cameras[view]
        colors, _, meta = rasterize(
            **model.activated(), viewmats=alone.viewmats, Ks=alone.Ks, width=size, height=size, backend="torch"
        )
        meta["means2d"].retain_grad()
        view_loss(colors[0], view).backward()
        visible = (meta["radii"][0] > 0).all(dim=-1)
        ndc = meta["means2d"].grad[0] * torch.tensor([size / 2, size / 2])
        expected_sum += torch.where(visible, ndc.norm(dim=-1), 0.0)
        expected_count += visible.float()
        model.zero_grad()

    densifier = Densifier.from_dreamgaussian(100, 500, 100, 0.01, 0.01, 4.0, 0.01, 0.1, 700)
    colors, _, meta = rasterize(**model.activated(), viewmats=cameras.viewmats, Ks=cameras.Ks, width=size,
                                height=size, backend="torch")  # fmt: skip
    densifier.step_pre_backward(model, optimizers, 1, meta)
    (sum(view_loss(colors[view], view) for view in range(count)) / count).backward()  # the prior's mean
    densifier.step_post_backward(model, optimizers, 1, meta)  # step 1: accumulate only
    state = densifier.state
    assert expected_count.sum() > 100 and torch.equal(state["count"], expected_count)
    torch.testing.assert_close(state["grad2d"], expected_sum, rtol=1e-4, atol=1e-6)


def test_refinement_happens_on_dreamgaussian_steps():
    """DreamGaussian refines at its steps 100, 200, ..., 500 counted from 1 (the static trainer passes step + 1)."""
    densifier = Densifier.from_dreamgaussian(**{**compose_config([]).static.densify, "stop": 500})
    model = GaussianModel.from_sphere(4, 0.1, torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.params["opacities"].fill_(3.0)  # opaque and small: refinement keeps them all
    optimizers = model.make_optimizers({"means": 0.0, "quats": 0.0, "scales": 0.0, "opacities": 0.0, "sh0": 0.0})
    refined = []
    for step in range(1, 501):
        means2d = torch.zeros(1, 4, 2, requires_grad=True)
        info = {"means2d": means2d, "radii": torch.ones(1, 4, 2), "width": 8, "height": 8, "n_cameras": 1,
                "gaussian_ids": None}  # fmt: skip
        densifier.step_pre_backward(model, optimizers, step, info)
        (means2d * 0).sum().backward()  # no gradient: nothing grows
        densifier.step_post_backward(model, optimizers, step, info)
        if densifier.state["count"].sum() == 0:  # statistics restart after a refinement
            refined.append(step)
    assert refined == [100, 200, 300, 400, 500] and model.num_gaussians == 4
    assert [step for step in range(1, 501) if densifier.is_refine_step(step)] == refined


# ----- dynamic stage: DreamGaussian4D ---------------------------------------------------------


def test_dynamic_defaults_are_dreamgaussian4d(dynamic_stage):
    defaults = compose_config([])
    assert defaults.dynamic.views_per_frame == 4 and defaults.dynamic.ref_warmup is True  # n_views; 10000 * step_ratio
    # phi alone, anchored at frame 0 (DG4D v1 trained phi alone; HEAD trains the Gaussians too): RESULTS.md, issue 19
    assert defaults.dynamic.optimize_gaussians is False and defaults.dynamic.anchor_frame == 0
    # The paper's eq. 4: the detector on the driving frame vs on the render (the synthetic ablation measured lift).
    assert defaults.dynamic.kml_mode == "render" and compose_config(["experiment=synthetic"]).dynamic.kml_mode == "lift"
    assert list(defaults.dynamic.novel_view_sizes) == [[0.0, 128], [0.3, 256], [0.6, 512]]
    hexplane = defaults.dynamic.deformation.otherwise  # 4d.yaml `deformation`; auto's field for automatic support
    assert list(hexplane.resolution) == [32, 32, 32, 12] and list(hexplane.multires) == [1]
    assert (hexplane.feature_dim, hexplane.width, hexplane.depth, hexplane.bounds) == (32, 64, 1, 1.6)

    iterations = 6  # with the Gaussians trained, as DG4D HEAD: its rates and schedule
    trainer = dynamic_stage(f"dynamic.iterations={iterations}", "dynamic/deformation=hexplane",
                            "dynamic.deformation.resolution=[8,8,8,2]", "dynamic.optimize_gaussians=true")  # fmt: skip
    field = trainer.deformation
    assert torch.equal(field.center, torch.zeros(3)) and torch.equal(field.half_size, torch.full((3,), 1.6))
    seen = {}
    for step in range(iterations):
        trainer.train_step()
        seen[step] = learning_rates({"all": trainer.optimizer})
    for step in (0, iterations // 2, iterations - 1):
        # gaussian_model_4d.py: spatial_lr_scale 1 after load_ply; phi constant (lr_init = lr_final).
        assert seen[step]["means"] == pytest.approx(dreamgaussian_expon_lr(step + 1, 1e-3, 2e-5, iterations))
        assert seen[step]["mlp"] == 6.4e-4 and seen[step]["planes"] == pytest.approx(6.4e-3, rel=1e-12)
        assert (seen[step]["sh0"], seen[step]["opacities"]) == (0.01, 0.05)
        assert (seen[step]["scales"], seen[step]["quats"]) == (0.005, 0.005)
    trained = [name for name, p in trainer.model.params.items() if p.grad is not None and p.grad.abs().sum() > 0]
    assert {"means", "sh0", "opacities", "scales"} <= set(trained)  # the Gaussians train with phi
