"""Mesh extraction from Gaussians (dynapose4d.export.mesh), checked against numbers computed another way."""

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial.transform import Rotation
from scipy.stats import norm

from dynapose4d.errors import DynaPoseError
from dynapose4d.export.mesh import (
    DENSITY_THRESHOLD,
    color_at,
    default_bounds,
    density_at,
    density_grid,
    extract_mesh,
)

# A filled ball: Gaussians on a cubic lattice of spacing H inside radius A, each isotropic with SIGMA > H, so
# the lattice's ripple (exp(-2 pi^2 SIGMA^2 / H^2) of the mean) is gone and the ball looks uniform. OPACITY puts
# the interior density at about 3, the threshold of 1 a little outside the lattice.
H, SIGMA, A, OPACITY = 0.07, 0.1, 0.5, 0.065
ORANGE, RED, BLUE = (0.8, 0.3, 0.2), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)


def gaussians(means, sigmas, opacities, colors) -> dict[str, torch.Tensor]:
    """Activated isotropic Gaussians."""
    n = len(means)
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1
    return {
        "means": torch.as_tensor(np.asarray(means), dtype=torch.float32),
        "quats": quats,
        "scales": torch.as_tensor(np.asarray(sigmas), dtype=torch.float32)[:, None].repeat(1, 3),
        "opacities": torch.as_tensor(np.asarray(opacities), dtype=torch.float32),
        "colors": torch.as_tensor(np.asarray(colors), dtype=torch.float32).expand(n, 3),
    }


def lattice_ball() -> np.ndarray:
    axis = np.arange(-A - H, A + H, H) + H / 2  # symmetric about 0, no point on the plane x = 0
    points = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    return points[np.linalg.norm(points, axis=1) <= A]  # [N, 3]


def ball(colors=ORANGE) -> dict[str, torch.Tensor]:
    means = lattice_ball()
    return gaussians(means, np.full(len(means), SIGMA), np.full(len(means), OPACITY), colors)


def expected_radius(n: int) -> float:
    """Where the density of n lattice Gaussians crosses the threshold, treating them as a uniform ball.

    A ball of number density 1 / H^3 and radius R_eff (its volume n H^3) convolved with N(0, SIGMA^2 I) has density
    OPACITY (2 pi)^1.5 (SIGMA / H)^3 P(r), P(r) the probability that N(r e, SIGMA^2 I) falls in the ball: the
    non-central chi distribution with 3 degrees of freedom, Phi(x - l) - Phi(-x - l) - (phi(x - l) - phi(x + l)) / l
    with x = R_eff / SIGMA, l = r / SIGMA.
    """
    r_eff = (3 * n * H**3 / (4 * np.pi)) ** (1 / 3)
    peak = OPACITY * (2 * np.pi) ** 1.5 * (SIGMA / H) ** 3
    x = r_eff / SIGMA

    def density(r):
        l = r / SIGMA
        return peak * (norm.cdf(x - l) - norm.cdf(-x - l) - (norm.pdf(x - l) - norm.pdf(x + l)) / l)

    return brentq(lambda r: density(r) - DENSITY_THRESHOLD, 0.5 * A, 2 * A)


def cell_size(g, resolution: int) -> float:
    lo, hi = default_bounds(g, resolution)
    return float(((hi - lo) / (resolution - 1)).max())


def edge_counts(faces: np.ndarray) -> np.ndarray:
    """How many faces hold each undirected edge."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    return np.unique(edges, axis=0, return_counts=True)[1]


def num_pieces(faces: np.ndarray) -> int:
    """Connected pieces, faces joined through shared vertices (a face-vertex incidence graph)."""
    f, v = len(faces), faces.max() + 1
    rows = np.repeat(np.arange(f), 3)
    incidence = coo_matrix((np.ones(3 * f), (rows, f + faces.reshape(-1))), shape=(f + v, f + v))
    _, labels = connected_components(incidence, directed=False)
    return len(np.unique(labels[:f]))


def outward(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Per face: does its right-hand normal point away from the origin?"""
    a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    return np.einsum("ij,ij->i", np.cross(b - a, c - a), (a + b + c) / 3) > 0


def test_ball_mesh_is_closed_one_piece_outward_at_the_analytic_radius_and_coloured():
    g = ball()
    resolution = 40
    mesh = extract_mesh(g, resolution=resolution, face_budget=None)
    assert mesh.vertices.dtype == np.float32 and mesh.colors.dtype == np.float32
    assert mesh.faces.shape[1] == 3 and len(mesh.faces) > 1000
    assert (edge_counts(mesh.faces) == 2).all()  # closed: every edge between exactly two faces
    assert num_pieces(mesh.faces) == 1
    assert outward(mesh.vertices, mesh.faces).all()
    radius = np.linalg.norm(mesh.vertices, axis=1)
    # One cell is the bound asked for; the continuum approximation and marching cubes stay within half of it.
    assert np.abs(radius - expected_radius(len(g["means"]))).max() < 0.5 * cell_size(g, resolution)
    np.testing.assert_allclose(mesh.colors, np.broadcast_to(ORANGE, mesh.colors.shape), atol=1e-3)


def test_two_coloured_ball_keeps_its_halves():
    means = lattice_ball()
    colors = np.where(means[:, :1] < 0, RED, BLUE)  # [N, 3]
    g = ball(colors)
    mesh = extract_mesh(g, resolution=32, face_budget=None)
    left, right = mesh.vertices[:, 0] < -0.2, mesh.vertices[:, 0] > 0.2
    assert left.sum() > 100 and right.sum() > 100
    # 0.2 is 2 sigma from the seam: the other half weighs Phi(-2) = 2.3% inside the ball, a little more on its
    # surface, where all Gaussians of both halves lie inwards.
    np.testing.assert_allclose(mesh.colors[left], np.broadcast_to(RED, (left.sum(), 3)), atol=0.05)
    np.testing.assert_allclose(mesh.colors[right], np.broadcast_to(BLUE, (right.sum(), 3)), atol=0.05)
    some = np.random.default_rng(0).choice(len(mesh.vertices), 200, replace=False)  # seam included
    weights = numpy_weights(mesh.vertices[some].astype(np.float64), g)  # [200, N]
    expected = weights @ colors / weights.sum(1, keepdims=True)
    np.testing.assert_allclose(mesh.colors[some], expected, rtol=0, atol=1e-5)


def test_small_far_piece_is_dropped():
    big = lattice_ball()
    # Eight coincident Gaussians: a peak density of 4 and a surface at 0.025 sqrt(2 ln 4) = 0.04 from (1.2, 0, 0).
    means = np.concatenate([big, np.tile([[1.2, 0.0, 0.0]], (8, 1))])
    sigmas = np.concatenate([np.full(len(big), SIGMA), np.full(8, 0.025)])
    opacities = np.concatenate([np.full(len(big), OPACITY), np.full(8, 0.5)])
    g = gaussians(means, sigmas, opacities, ORANGE)
    everything = extract_mesh(g, resolution=40, face_budget=None, min_piece_fraction=0)
    assert num_pieces(everything.faces) == 2  # the tiny ball is there to drop
    mesh = extract_mesh(g, resolution=40, face_budget=None)
    assert num_pieces(mesh.faces) == 1
    assert np.linalg.norm(mesh.vertices, axis=1).max() < 0.6
    assert (edge_counts(mesh.faces) == 2).all()


def test_face_budget_is_respected_and_keeps_the_ball():
    g = ball()
    resolution = 32
    full = extract_mesh(g, resolution=resolution, face_budget=None)
    budget = 400
    assert len(full.faces) > 4 * budget
    mesh = extract_mesh(g, resolution=resolution, face_budget=budget)
    assert 0.9 * budget <= len(mesh.faces) <= budget
    assert (edge_counts(mesh.faces) == 2).all() and outward(mesh.vertices, mesh.faces).all()
    assert np.unique(mesh.faces).size == len(mesh.vertices)  # no unused vertices
    radius = np.linalg.norm(mesh.vertices, axis=1)
    assert np.abs(radius - expected_radius(len(g["means"]))).max() < cell_size(g, resolution)


def random_anisotropic(n: int, seed: int) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    quats = rng.normal(size=(n, 4))
    return {
        "means": torch.tensor(rng.uniform(-0.5, 0.5, (n, 3)), dtype=torch.float32),
        "quats": torch.tensor(quats / np.linalg.norm(quats, axis=1, keepdims=True), dtype=torch.float32),
        "scales": torch.tensor(rng.uniform(0.03, 0.3, (n, 3)), dtype=torch.float32),  # up to 4 grid cells wide
        "opacities": torch.tensor(rng.uniform(0.2, 0.9, n), dtype=torch.float32),
        "colors": torch.tensor(rng.uniform(0, 1, (n, 3)), dtype=torch.float32),
    }


def numpy_weights(points: np.ndarray, g: dict[str, torch.Tensor]) -> np.ndarray:
    """opacity_i exp(-0.5 d^T Sigma_i^-1 d) [M, N], Sigma from scipy's rotation (xyzw) and numpy's inverse."""
    q, s = g["quats"].double().numpy(), g["scales"].double().numpy()
    rotations = Rotation.from_quat(q[:, [1, 2, 3, 0]]).as_matrix()  # [N, 3, 3]
    covariances = rotations @ (s[:, :, None] ** 2 * rotations.transpose(0, 2, 1))  # R S S^T R^T
    d = points[:, None, :] - g["means"].double().numpy()[None]  # [M, N, 3]
    squared = np.einsum("mni,nij,mnj->mn", d, np.linalg.inv(covariances), d)
    return g["opacities"].double().numpy() * np.exp(-0.5 * squared)


def test_density_grid_does_not_depend_on_the_block_size_and_matches_a_direct_sum():
    g = random_anisotropic(25, seed=0)
    lo, hi = np.full(3, -0.8), np.full(3, 0.8)
    resolution = 14
    small, large = density_grid(g, resolution, (lo, hi), block=3), density_grid(g, resolution, (lo, hi), block=16)
    assert small.shape == (resolution,) * 3
    np.testing.assert_allclose(small.numpy(), large.numpy(), rtol=0, atol=1e-5)
    axis = np.linspace(-0.8, 0.8, resolution)
    points = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    direct = numpy_weights(points, g).sum(1).reshape((resolution,) * 3)
    assert direct.max() > 1  # the grid holds a surface
    np.testing.assert_allclose(small.numpy(), direct, rtol=0, atol=1e-5)


def test_density_and_colour_of_rotated_elongated_gaussians_match_the_formula():
    g = random_anisotropic(2, seed=1)
    g["scales"] = torch.tensor([[0.4, 0.05, 0.1], [0.1, 0.3, 0.02]])
    rng = np.random.default_rng(2)
    rotation = Rotation.from_quat(g["quats"][0].double().numpy()[[1, 2, 3, 0]]).as_matrix()
    # Points along the first Gaussian's long axis (where an isotropic model would be far off) and scattered ones.
    along = g["means"][0].double().numpy() + np.outer([0.0, 0.2, 0.5, 0.9], rotation[:, 0])
    around = g["means"].double().numpy()[rng.integers(0, 2, 20)] + rng.normal(0, 0.15, (20, 3))
    points = np.concatenate([along, around])  # [M, 3]
    weights = numpy_weights(points, g)  # [M, 2]
    density = density_at(torch.tensor(points), g).numpy()
    # atol: the kernels stop at 6 sigma, where a Gaussian has exp(-18) = 1.5e-8 of its peak left.
    np.testing.assert_allclose(density, weights.sum(1), rtol=1e-6, atol=1e-7)
    assert density[1] > 0.8 * g["opacities"][0].item()  # 0.5 sigma along the long axis: exp(-0.125)
    colors = color_at(torch.tensor(points), g).numpy()
    mean_colors = weights @ g["colors"].double().numpy() / weights.sum(1, keepdims=True)
    reached = weights.sum(1) > 1e-2  # where the cut-off tails cannot move the mean by more than 1.5e-6
    assert reached.sum() >= 8
    np.testing.assert_allclose(colors[reached], mean_colors[reached], rtol=0, atol=1e-5)


def test_no_surface_is_a_clear_error():
    faint = ball()
    faint["opacities"] = torch.full_like(faint["opacities"], 0.01)  # interior density ~0.5 < 1
    with pytest.raises(DynaPoseError, match=r"never reaches 1 on the 24\^3 grid.*lower mesh\.threshold"):
        extract_mesh(faint, resolution=24)
    empty = {key: value[:0] for key, value in ball().items()}
    with pytest.raises(DynaPoseError, match="no Gaussians"):
        extract_mesh(empty, resolution=24)


def test_bounds_that_cut_the_ball_give_a_capped_closed_mesh():
    mesh = extract_mesh(ball(), resolution=24, face_budget=None, bounds=([-0.7, -0.7, 0.0], [0.7, 0.7, 0.7]))
    assert (edge_counts(mesh.faces) == 2).all() and num_pieces(mesh.faces) == 1
    assert mesh.vertices[:, 2].min() >= -0.7 / 23  # the cap: within the zero layer's cell below z = 0
    assert outward(mesh.vertices - np.float32([0, 0, 0.2]), mesh.faces).all()  # seen from a point inside
