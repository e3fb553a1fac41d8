"""Scoring novel views in chunks (priors/chunks.py) gives the gradient of scoring them all at once.

The references are the unchunked computations: `prior.loss` on every view with one backward
pass, and each training stage's step at a chunk as large as its batch.
"""

import pytest
import torch
from conftest import compose_config

from dynapose4d.cameras import sample_orbit_cameras
from dynapose4d.data.sample import Sample
from dynapose4d.gaussians import GaussianModel
from dynapose4d.pipeline import run
from dynapose4d.pretrained.zero123 import load_zero123
from dynapose4d.priors import ViewBatch, draw_noise_seeds
from dynapose4d.priors.chunks import score_in_chunks
from dynapose4d.priors.oracle import OraclePrior
from dynapose4d.priors.zero123 import Zero123Prior
from dynapose4d.render import rasterize
from dynapose4d.run import Run
from dynapose4d.stages.static import StaticStage

CPU = torch.device("cpu")
VIEWS, SIZE = 5, 32


def scene_and_views(seed: int = 0) -> tuple[GaussianModel, ViewBatch]:
    model = GaussianModel.from_sphere(150, 0.5, torch.Generator().manual_seed(seed))
    with torch.no_grad():  # anisotropic, so that rotations change the render
        model.params["scales"] += torch.rand(
            model.params["scales"].shape, generator=torch.Generator().manual_seed(seed)
        )
    cameras, elevations, azimuths = sample_orbit_cameras(
        VIEWS, torch.Generator().manual_seed(seed + 1), width=SIZE, height=SIZE
    )
    seeds = draw_noise_seeds(VIEWS, torch.Generator().manual_seed(seed + 2))
    backgrounds = torch.tensor([[1.0] * 3, [0.0] * 3, [1.0] * 3, [0.0] * 3, [1.0] * 3])
    return model, ViewBatch(cameras, elevations, azimuths, 2.0, backgrounds=backgrounds, noise_seeds=seeds)


def gradients_of(model: GaussianModel, views: ViewBatch, score) -> tuple[float, dict[str, torch.Tensor]]:
    """The loss `score(colors, alphas)` returns and d(that objective)/d(each Gaussian parameter)."""
    model.zero_grad()
    colors, alphas, _ = rasterize(
        **model.activated(), viewmats=views.cameras.viewmats, Ks=views.cameras.Ks, width=SIZE, height=SIZE,
        backgrounds=views.backgrounds, backend="torch",
    )  # fmt: skip
    value, objective = score(colors, alphas)
    objective.backward()
    return value.detach().item(), {key: parameter.grad.clone() for key, parameter in model.params.items()}


def assert_same_gradients(expected: dict, actual: dict, tolerance: float = 1e-4, overall: bool = False) -> None:
    """Equal to `tolerance` of each gradient's largest element (`overall`: of the largest element of all the
    gradients); every gradient reached its parameter."""
    assert expected and expected.keys() == actual.keys()
    largest = max(grad.abs().max().item() for grad in expected.values())
    for key, grad in expected.items():
        assert grad.abs().sum() > 0, key
        scale = largest if overall else grad.abs().max().item()
        torch.testing.assert_close(
            actual[key], grad, rtol=10 * tolerance, atol=tolerance * scale, msg=lambda m, key=key: f"{key}: {m}"
        )


def zero123_prior(directory) -> Zero123Prior:
    reference = torch.ones(32, 32, 4)
    reference[8:24, 8:24, :3] = torch.tensor([0.8, 0.3, 0.2])
    return Zero123Prior(load_zero123(directory, CPU, torch.float32), reference[None], 5.0, (0.98, 0.02), False)


def oracle_prior() -> OraclePrior:
    generator = torch.Generator().manual_seed(3)
    views = [{"elevation": 10.0 * i, "azimuth": 70.0 * i} for i in range(3)]
    sample = Sample(
        image=torch.rand(SIZE, SIZE, 4, generator=generator), driving_video=torch.rand(1, SIZE, SIZE, 4),
        eval_views=[], eval_renders=torch.zeros(1, 0, SIZE, SIZE, 4), train_views=views,
        train_renders=torch.rand(1, 3, SIZE, SIZE, 4, generator=generator),
    )  # fmt: skip
    return OraclePrior(sample, needs_every_frame=False)


@pytest.mark.parametrize("chunk_size", [1, 2, 3, VIEWS, 8])
def test_chunks_give_the_gradient_of_one_zero123_pass(tiny_zero123_dir, chunk_size):
    prior = zero123_prior(tiny_zero123_dir)
    model, views = scene_and_views()
    whole = gradients_of(model, views, lambda c, a: (loss := prior.loss(c, a, views, 0.3), loss))
    chunked = gradients_of(model, views, lambda c, a: score_in_chunks(prior, c, a, views, 0.3, chunk_size))
    assert chunked[0] == pytest.approx(whole[0], rel=1e-5)
    assert_same_gradients(whole[1], chunked[1])


def test_chunks_give_the_gradient_of_one_oracle_pass():
    """The oracle's loss reads colours and alphas: both leaves carry their gradient."""
    prior = oracle_prior()
    model, views = scene_and_views()
    cameras, elevations, azimuths, picks = prior.sample_cameras(VIEWS, SIZE, torch.Generator().manual_seed(4))
    views = ViewBatch(cameras, elevations, azimuths, 2.0, backgrounds=views.backgrounds, view_indices=picks)
    whole = gradients_of(model, views, lambda c, a: (loss := prior.loss(c, a, views, 0.0), loss))
    chunked = gradients_of(model, views, lambda c, a: score_in_chunks(prior, c, a, views, 0.0, 2))
    assert chunked[0] == pytest.approx(whole[0], rel=1e-6)
    assert_same_gradients(whole[1], chunked[1])


def test_a_view_scores_the_same_whichever_views_share_its_chunk(tiny_zero123_dir):
    """Its noise comes from its own seed, not from the order of draws from a shared RNG."""
    prior = zero123_prior(tiny_zero123_dir)
    colors = torch.rand(VIEWS, SIZE, SIZE, 3, generator=torch.Generator().manual_seed(5))
    _, views = scene_and_views()
    alone = prior.loss(colors[3:4], colors[3:4, ..., :1], views[3:4], 0.5)
    together = [prior.loss(colors[i : i + 1], colors[i : i + 1, ..., :1], views[i : i + 1], 0.5) for i in range(VIEWS)]
    assert torch.stack(together).mean().item() == pytest.approx(prior.loss(colors, colors[..., :1], views, 0.5).item(),
                                                                rel=1e-5)  # fmt: skip
    assert alone.item() == pytest.approx(together[3].item(), rel=1e-6)


def recorded_gradients(optimizers) -> dict[str, torch.Tensor]:
    """Make each optimizer's `step` record its parameters' gradients (by group name) instead of stepping."""
    recorded = {}
    for key, optimizer in optimizers.items():

        def record(optimizer=optimizer, key=key):
            for index, group in enumerate(optimizer.param_groups):
                for number, parameter in enumerate(group["params"]):
                    name = f"{key}.{group.get('name', index)}.{number}"
                    if parameter.grad is not None and parameter.grad.abs().sum() > 0:  # isotropic Gaussians: no quats
                        recorded[name] = parameter.grad.clone()

        optimizer.step = record
    return recorded


def one_step_gradients(stage) -> dict[str, torch.Tensor]:
    recorded = recorded_gradients(stage.named_optimizers())
    stage.train_step()
    return recorded


def test_static_step_gradient_does_not_depend_on_the_chunk_size(tmp_path, tiny_zero123_dir):
    base = ["experiment=synthetic", "image_size=32", "synthetic.num_frames=2", "synthetic.num_gaussians=300",
            f"run_dir={tmp_path / 'run'}", "log.tensorboard=false", "log.images_every=0"]  # fmt: skip
    run_dir = run(compose_config([*base, "stages=[]"]))
    step = ["static.prior=zero123", f"static.model={tiny_zero123_dir}", "static.batch_size=5", "static.num_points=200",
            "static.render_size=32", "static.novel_view_sizes=[[0,32]]"]  # fmt: skip
    gradients = {}
    for chunk in (5, 2):
        config = compose_config([*base, *step, f"static.prior_chunk={chunk}"])
        gradients[chunk] = one_step_gradients(StaticStage.from_run(Run(config, run_dir, CPU)))
    # The UNet's batched convolutions round differently at batch 2 x 5 and 2 x 2 (as in test_zero123): 1e-3.
    assert_same_gradients(gradients[5], gradients[2], tolerance=1e-3)


def test_dynamic_step_gradient_does_not_depend_on_the_chunk_size(dynamic_stage, tiny_zero123_dir):
    step = ["dynamic.prior=zero123", f"dynamic.model={tiny_zero123_dir}", "dynamic.views_per_frame=3",
            "dynamic.novel_view_sizes=[[0,32]]"]  # fmt: skip
    gradients = {chunk: one_step_gradients(dynamic_stage(*step, f"dynamic.prior_chunk={chunk}")) for chunk in (6, 4)}
    # Overall: the heads' last biases cancel in the anchored field's m(t) - m(t0), so their gradient is rounding.
    assert_same_gradients(gradients[6], gradients[4], tolerance=1e-3, overall=True)
