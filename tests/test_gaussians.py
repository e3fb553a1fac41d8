"""GaussianModel (activations, init, PLY, checkpoints) and the Densifier wrapper."""

import io
import math

import numpy as np
import pytest
import torch

from dynapose4d.cameras import orbit_cameras
from dynapose4d.densify import Densifier
from dynapose4d.errors import DynaPoseError
from dynapose4d.gaussians import PLY_PROPERTIES, SH_C0, GaussianModel, nearest_neighbor_spacing
from dynapose4d.render import rasterize

LRS = {"means": 1e-3, "quats": 1e-3, "scales": 1e-3, "opacities": 1e-2, "sh0": 1e-2}


def random_model(n: int = 64, seed: int = 0) -> GaussianModel:
    g = torch.Generator().manual_seed(seed)
    return GaussianModel(
        {
            "means": torch.randn(n, 3, generator=g),
            "quats": torch.randn(n, 4, generator=g),
            "scales": torch.randn(n, 3, generator=g) - 3.0,
            "opacities": torch.randn(n, generator=g),
            "sh0": torch.randn(n, 1, 3, generator=g),
        }
    )


# ----- activations and construction ------------------------------------------------------


def test_activated_matches_hand_computed_values():
    model = GaussianModel(
        {
            "means": torch.tensor([[1.0, 2.0, 3.0]]),
            "quats": torch.tensor([[0.0, 3.0, 0.0, 4.0]]),
            "scales": torch.tensor([[0.0, math.log(2.0), -math.log(4.0)]]),
            "opacities": torch.tensor([math.log(3.0)]),  # sigmoid(log 3) = 3 / 4
            "sh0": torch.tensor([[[1.0, 0.0, -10.0]]]),
        }
    )
    a = model.activated()
    torch.testing.assert_close(a["means"], torch.tensor([[1.0, 2.0, 3.0]]))
    torch.testing.assert_close(a["quats"], torch.tensor([[0.0, 0.6, 0.0, 0.8]]))
    torch.testing.assert_close(a["scales"], torch.tensor([[1.0, 2.0, 0.25]]))
    torch.testing.assert_close(a["opacities"], torch.tensor([0.75]))
    # 0.5 + C0 * sh0, and 0.5 - 10 C0 < 0 is clamped to 0
    torch.testing.assert_close(a["colors"], torch.tensor([[0.5 + SH_C0, 0.5, 0.0]]))
    assert model.num_gaussians == 1


def test_from_tensors_inverts_activated():
    model = random_model()
    activated = {k: v.detach() for k, v in model.activated().items()}
    back = GaussianModel.from_tensors(activated).activated()
    for key, value in activated.items():
        torch.testing.assert_close(back[key], value, rtol=1e-5, atol=1e-5)


def test_from_sphere_inside_ball_with_neighbour_scales():
    g = torch.Generator().manual_seed(1)
    model = GaussianModel.from_sphere(300, radius=0.7, generator=g, color=torch.tensor([0.2, 0.4, 0.6]))
    a = model.activated()
    assert a["means"].norm(dim=-1).max() <= 0.7
    # Uniform in volume: a quarter of the points lie within radius 0.7 * 4^(-1/3).
    inner = (a["means"].norm(dim=-1) < 0.7 * 0.25 ** (1 / 3)).float().mean()
    assert 0.18 < inner < 0.32
    # Brute force: sqrt of the mean squared distance to the 3 nearest other points.
    means = a["means"].detach().double()
    dist2 = ((means[:, None] - means[None]) ** 2).sum(-1)
    dist2.fill_diagonal_(float("inf"))
    expected = dist2.sort(dim=1).values[:, :3].mean(dim=1).sqrt().float()
    torch.testing.assert_close(a["scales"], expected[:, None].expand(-1, 3), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(a["opacities"], torch.full((300,), 0.1))
    torch.testing.assert_close(a["quats"], torch.tensor([[1.0, 0.0, 0.0, 0.0]]).expand(300, 4))
    torch.testing.assert_close(a["colors"], torch.tensor([[0.2, 0.4, 0.6]]).expand(300, 3))


def test_from_sphere_reproducible_with_generator():
    first = GaussianModel.from_sphere(50, generator=torch.Generator().manual_seed(3))
    second = GaussianModel.from_sphere(50, generator=torch.Generator().manual_seed(3))
    for key in first.params:
        assert torch.equal(first.params[key], second.params[key])
    colors = first.activated()["colors"]
    assert colors.min() >= 0 and colors.max() <= 1 and colors.std() > 0.1  # random colours


def test_nearest_neighbor_spacing_across_blocks():
    # 2**25 // 20000 = 1677 rows per block: several blocks, exercising the diagonal offset.
    points = torch.rand(20000, 3, generator=torch.Generator().manual_seed(0))
    spacing = nearest_neighbor_spacing(points)
    probe = torch.tensor([0, 1676, 1677, 10000, 19999])
    dist2 = ((points[probe, None].double() - points[None].double()) ** 2).sum(-1)
    dist2[torch.arange(len(probe)), probe] = float("inf")
    expected = dist2.sort(dim=1).values[:, :3].mean(dim=1).sqrt().float()
    torch.testing.assert_close(spacing[probe], expected, rtol=1e-3, atol=1e-6)


# ----- optimizers and checkpoints --------------------------------------------------------


def test_make_optimizers_one_adam_per_parameter():
    model = random_model()
    optimizers = model.make_optimizers(LRS)
    assert set(optimizers) == set(model.params)
    for key, optimizer in optimizers.items():
        (group,) = optimizer.param_groups
        assert group["params"][0] is model.params[key]
        assert group["lr"] == LRS[key] and group["eps"] == 1e-15
    with pytest.raises(ValueError, match="trainable"):
        model.make_optimizers({"means": 1e-3})
    model.params["sh0"].requires_grad_(False)
    assert "sh0" not in model.make_optimizers({k: v for k, v in LRS.items() if k != "sh0"})


def test_load_state_dict_resizes_to_saved_number_of_gaussians():
    saved = random_model(n=80, seed=1)
    saved.params["tag"] = torch.nn.Parameter(torch.arange(80.0), requires_grad=False)
    model = random_model(n=10, seed=2)
    model.params["tag"] = torch.nn.Parameter(torch.zeros(10), requires_grad=False)
    model.load_state_dict(saved.state_dict())
    assert model.num_gaussians == 80
    for key in saved.params:
        assert torch.equal(model.params[key], saved.params[key])
    assert model.params["means"].requires_grad and not model.params["tag"].requires_grad
    bare = random_model(n=4)  # the ParameterDict's own keys work too
    bare.load_state_dict({key: value for key, value in saved.params.items() if key != "tag"})
    assert torch.equal(bare.params["sh0"], saved.params["sh0"])
    with pytest.raises(KeyError, match="missing"):
        random_model().load_state_dict({"params.means": torch.zeros(3, 3)})
    with pytest.raises(KeyError, match="unexpected"):
        random_model().load_state_dict(saved.state_dict())  # has `tag`, the model does not


# ----- PLY -------------------------------------------------------------------------------


def test_ply_round_trip_is_exact(tmp_path):
    model = random_model(n=33)
    path = tmp_path / "model.ply"
    model.save_ply(path)
    loaded = GaussianModel.load_ply(path)
    assert loaded.num_gaussians == 33
    for key in model.params:
        assert torch.equal(loaded.params[key], model.params[key]), key
    assert [p.name for p in tmp_path.iterdir()] == ["model.ply"]  # no temporary left behind


def test_ply_header_is_inria_layout(tmp_path):
    model = random_model(n=5)
    path = tmp_path / "model.ply"
    model.save_ply(path)
    data = path.read_bytes()
    header, body = data.split(b"end_header\n", 1)
    expected = ["ply", "format binary_little_endian 1.0", "element vertex 5"]
    expected += [f"property float {name}" for name in PLY_PROPERTIES]
    assert header.decode("ascii").splitlines() == expected
    assert PLY_PROPERTIES == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"] + [
        "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3",
    ]  # fmt: skip
    # Raw values, in that order: opacity is the logit, scales the logs, rot the raw wxyz.
    rows = np.frombuffer(body, dtype="<f4").reshape(5, 17)
    p = {k: v.detach().numpy() for k, v in model.params.items()}
    np.testing.assert_array_equal(rows[:, 0:3], p["means"])
    np.testing.assert_array_equal(rows[:, 3:6], 0.0)
    np.testing.assert_array_equal(rows[:, 6:9], p["sh0"][:, 0])
    np.testing.assert_array_equal(rows[:, 9], p["opacities"])
    np.testing.assert_array_equal(rows[:, 10:13], p["scales"])
    np.testing.assert_array_equal(rows[:, 13:17], p["quats"])


def test_ply_readable_by_plyfile_and_loads_files_with_higher_sh(tmp_path):
    import plyfile

    model = random_model(n=7)
    model.save_ply(tmp_path / "ours.ply")
    vertex = plyfile.PlyData.read(tmp_path / "ours.ply")["vertex"]
    assert [p.name for p in vertex.properties] == PLY_PROPERTIES
    np.testing.assert_array_equal(vertex["opacity"], model.params["opacities"].detach().numpy())
    # A degree-3 file as the INRIA trainer writes it: f_rest_* between f_dc and opacity.
    names = PLY_PROPERTIES[:9] + [f"f_rest_{i}" for i in range(45)] + PLY_PROPERTIES[9:]
    records = np.zeros(7, dtype=[(name, "f4") for name in names])
    for name in PLY_PROPERTIES:
        records[name] = vertex[name]
    records["f_rest_3"] = 9.0
    plyfile.PlyData([plyfile.PlyElement.describe(records, "vertex")]).write(tmp_path / "inria.ply")
    loaded = GaussianModel.load_ply(tmp_path / "inria.ply")
    for key in model.params:
        assert torch.equal(loaded.params[key], model.params[key]), key


def test_load_ply_rejects_other_files(tmp_path):
    path = tmp_path / "mesh.ply"
    path.write_bytes(
        b"ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\nend_header\n" + bytes(4)
    )
    with pytest.raises(DynaPoseError, match="lacks"):
        GaussianModel.load_ply(path)
    path.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 0\nend_header\n")
    with pytest.raises(DynaPoseError, match="little-endian"):
        GaussianModel.load_ply(path)


# ----- densification ---------------------------------------------------------------------

WIDTH = HEIGHT = 64
SMALL, LARGE = math.log(0.01), math.log(0.1)  # log scales below / above grow_scale3d = 0.05


def tagged_model(n: int = 60) -> GaussianModel:
    """Gaussians 0-9 small, 10-19 large, 20-29 nearly transparent; `tag` tracks identity."""
    model = random_model(n=n)
    with torch.no_grad():
        model.params["scales"].fill_(SMALL)
        model.params["scales"][10:20] = LARGE
        model.params["opacities"].fill_(0.0)  # 0.5
        model.params["opacities"][20:30] = -6.0  # 0.0025 < prune_opa
    # A per-Gaussian side tensor: densification must carry it along.
    model.params["tag"] = torch.nn.Parameter(torch.arange(float(n)), requires_grad=False)
    return model


def fake_render_step(model, optimizers, densifier, step, pull):
    """A training step with a hand-made renderer `info`: forward, backward, Adam, densify."""
    info = forward_backward(model, optimizers, densifier, step, pull)
    densifier.step_post_backward(model, optimizers, step, info)


def forward_backward(model, optimizers, densifier, step, pull) -> dict:
    """A training step up to (not including) densification; returns the `info` dict.

    `pull` [N] scales the loss's gradient on each Gaussian's 2D mean; Gaussian 30
    gets a large one too but is off screen (radii 0), so it must not count.
    """
    n = model.num_gaussians
    means2d = torch.zeros(1, n, 2, requires_grad=True)  # [C, N, 2]
    radii = torch.full((1, n, 2), 4, dtype=torch.int32)  # [C, N, 2]
    radii[0, model.params["tag"] == 30] = 0
    info = {"means2d": means2d, "radii": radii, "width": WIDTH, "height": HEIGHT, "n_cameras": 1, "gaussian_ids": None}
    densifier.step_pre_backward(model, optimizers, step, info)
    # The means get gradients too, so every Adam has state to be resized.
    loss = (means2d.sum(-1)[0] * pull).sum() + model.params["means"].square().sum() * 1e-3
    for value in model.activated().values():
        loss = loss + value.sum() * 1e-3
    loss.backward()
    for optimizer in optimizers.values():
        optimizer.step()
        optimizer.zero_grad()
    return info


def make_densifier(**overrides) -> Densifier:
    settings = dict(
        refine_start_iter=0,
        refine_every=4,
        grow_grad2d=2e-4,
        grow_scale3d=0.05,
        prune_opa=0.005,
        reset_every=10_000,
    )
    return Densifier(scene_scale=1.0, **(settings | overrides))


def high_pull(tags: torch.Tensor) -> torch.Tensor:
    """1e-2 (normalised grad 0.32 >> 2e-4) for Gaussians 0-19 and 30, 1e-8 otherwise."""
    high = (tags < 20) | (tags == 30)
    return torch.where(high, 1e-2, 1e-8)


def assert_optimizers_match(model, optimizers):
    for key, optimizer in optimizers.items():
        param = optimizer.param_groups[0]["params"][0]
        assert param is model.params[key], key
        assert set(optimizer.state) == {param}, key
        for name in ("exp_avg", "exp_avg_sq"):
            assert optimizer.state[param][name].shape == param.shape, (key, name)


def test_densify_duplicates_splits_prunes_and_resizes_optimizers():
    torch.manual_seed(0)
    model = tagged_model()
    optimizers = model.make_optimizers(LRS)
    densifier = make_densifier()
    densifier.check(model, optimizers)
    for step in range(1, 4):  # accumulate only
        fake_render_step(model, optimizers, densifier, step, high_pull(model.params["tag"]))
    assert model.num_gaussians == 60
    info = forward_backward(model, optimizers, densifier, 4, high_pull(model.params["tag"]))
    before = {k: v.detach().clone() for k, v in model.params.items()}
    exp_avg_before = optimizers["means"].state[model.params["means"]]["exp_avg"].clone()
    densifier.step_post_backward(model, optimizers, 4, info)

    tags = model.params["tag"].long()
    counts = torch.bincount(tags, minlength=60)
    assert counts[:10].tolist() == [2] * 10  # small + high gradient: duplicated
    assert counts[10:20].tolist() == [2] * 10  # large + high gradient: split in two
    assert counts[20:30].tolist() == [0] * 10  # transparent: pruned
    assert counts[30:].tolist() == [1] * 30  # off screen or low gradient: kept
    assert model.num_gaussians == 70
    assert_optimizers_match(model, optimizers)
    assert densifier.state["grad2d"].shape == (70,) and densifier.state["count"].shape == (70,)

    # Split children take their parent's scale / 1.6, around the parent's mean.
    for tag in range(10, 20):
        rows = tags == tag
        children = model.params["scales"].detach()[rows]  # [2, 3]
        torch.testing.assert_close(children, (before["scales"][tag] - math.log(1.6)).expand(2, 3))
        offsets = model.params["means"].detach()[rows] - before["means"][tag]  # [2, 3]
        assert 0 < offsets.norm(dim=-1).max() < 6 * 0.1  # sampled from N(0, parent covariance)
    exp_avg = optimizers["means"].state[model.params["means"]]["exp_avg"]
    for tag in range(30, 60):  # untouched Gaussians keep their Adam moments
        (row,) = torch.where(tags == tag)[0].tolist()
        torch.testing.assert_close(exp_avg[row], exp_avg_before[tag])
    # Split children start with fresh moments; a duplicate is an exact copy with fresh moments.
    assert exp_avg[(tags >= 10) & (tags < 20)].abs().max() == 0
    for tag in range(10):
        parent, child = torch.where(tags == tag)[0].tolist()
        for key in model.params:
            assert torch.equal(model.params[key][parent], before[key][tag])
            assert torch.equal(model.params[key][child], before[key][tag])
        torch.testing.assert_close(exp_avg[parent], exp_avg_before[tag])
        assert exp_avg[child].abs().max() == 0


def test_densify_resets_opacity_every_reset_every_steps():
    model = tagged_model()
    optimizers = model.make_optimizers(LRS)
    densifier = make_densifier(refine_every=1000, reset_every=2, prune_opa=0.05)
    fake_render_step(model, optimizers, densifier, 1, torch.zeros(60))
    assert torch.sigmoid(model.params["opacities"]).max() > 0.4
    fake_render_step(model, optimizers, densifier, 2, torch.zeros(60))
    opacities = torch.sigmoid(model.params["opacities"].detach())
    assert opacities.max() <= 0.1 + 1e-6  # clamped to 2 * prune_opa
    assert optimizers["opacities"].state[model.params["opacities"]]["exp_avg"].abs().max() == 0
    assert_optimizers_match(model, optimizers)


def run_to_refine(model, optimizers, densifier, steps):
    """Steps with a high gradient on Gaussians 0-19 and 30 then (step 4) a low one everywhere."""
    for step in steps:
        pull = high_pull(model.params["tag"]) if step < 4 else torch.full((model.num_gaussians,), 1e-8)
        fake_render_step(model, optimizers, densifier, step, pull)


def test_densifier_resume_gives_same_decisions():
    torch.manual_seed(0)
    model = tagged_model()
    optimizers = model.make_optimizers(LRS)
    densifier = make_densifier()
    run_to_refine(model, optimizers, densifier, [1, 2, 3])
    # Serialised at once, as a checkpoint file is: state dicts share tensors (and the
    # optimizers' per-parameter dicts) with the live objects, which later steps mutate.
    buffer = io.BytesIO()
    torch.save(
        {
            "model": model.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
            "densifier": densifier.state_dict(),
            "rng": torch.get_rng_state(),
        },
        buffer,
    )
    buffer.seek(0)
    checkpoint = torch.load(buffer)
    run_to_refine(model, optimizers, densifier, [4])
    assert model.num_gaussians == 70  # step 4 alone has low gradients; the history decides

    def resumed(with_densifier_state: bool) -> GaussianModel:
        other = tagged_model(n=5)  # a different size: load_state_dict must resize
        other.load_state_dict(checkpoint["model"])
        other_optimizers = other.make_optimizers(LRS)
        for key, optimizer in other_optimizers.items():
            optimizer.load_state_dict(checkpoint["optimizers"][key])
        other_densifier = make_densifier()
        if with_densifier_state:
            other_densifier.load_state_dict(checkpoint["densifier"])
        torch.set_rng_state(checkpoint["rng"])
        run_to_refine(other, other_optimizers, other_densifier, [4])
        assert_optimizers_match(other, other_optimizers)
        return other

    again = resumed(with_densifier_state=True)
    for key in model.params:
        assert torch.equal(again.params[key], model.params[key]), key
    assert torch.equal(again.state_dict()["params.tag"], model.params["tag"])
    assert resumed(with_densifier_state=False).num_gaussians == 50  # only the pruning happens


def test_densifier_state_dict_rejects_foreign_keys():
    with pytest.raises(KeyError):
        make_densifier().load_state_dict({"grad2d": None})


def test_densify_with_real_renders():
    """The renderer's meta drives densification: Gaussians grow and training goes on."""
    cameras = orbit_cameras(torch.tensor([0.0, 20.0]), torch.tensor([0.0, 90.0]), width=32, height=32)
    g = torch.Generator().manual_seed(0)
    target_model = GaussianModel.from_sphere(100, radius=0.4, generator=g, color=torch.tensor([0.9, 0.2, 0.1]))
    with torch.no_grad():
        target, _, _ = rasterize(
            **target_model.activated(), viewmats=cameras.viewmats, Ks=cameras.Ks, width=32, height=32, backend="torch"
        )
    model = GaussianModel.from_sphere(60, radius=0.5, generator=g)
    optimizers = model.make_optimizers(LRS)
    # A low threshold so that a handful of steps must grow some Gaussians.
    densifier = make_densifier(refine_every=3, grow_grad2d=1e-6, grow_scale3d=0.05)
    densifier.check(model, optimizers)
    for step in range(1, 7):
        image, _, meta = rasterize(
            **model.activated(), viewmats=cameras.viewmats, Ks=cameras.Ks, width=32, height=32, backend="torch"
        )
        densifier.step_pre_backward(model, optimizers, step, meta)
        loss = (image - target).abs().mean()
        loss.backward()
        assert meta["means2d"].grad is not None and meta["means2d"].grad.abs().sum() > 0
        for optimizer in optimizers.values():
            optimizer.step()
            optimizer.zero_grad()
        densifier.step_post_backward(model, optimizers, step, meta)
        assert torch.isfinite(loss)
    assert model.num_gaussians > 60
    assert_optimizers_match(model, optimizers)
