"""The polar Ω°(Z) = sup_{θ(w) <= 1} <Z, φ(X, w)>: exact cases and the heuristic against them."""

import numpy as np
import pytest

from nnlift.homogeneous import ParallelNetwork, polar, relu_polar_exact_2d


def test_matrix_factorization_polar_is_the_spectral_norm():
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((8, 6))
    net = ParallelNetwork.random(2, [8, 1, 6], "linear")
    result = polar(net, None, Z)
    assert result.exact
    assert result.value == pytest.approx(np.linalg.norm(Z, 2), rel=1e-12)
    u, v = result.unit[0][0], result.unit[1][:, 0]
    assert u @ Z @ v == pytest.approx(result.value, rel=1e-12)      # the maximiser attains it
    linear_net = ParallelNetwork.random(2, [5, 1, 6], "linear")
    X = rng.standard_normal((8, 5))
    assert polar(linear_net, X, Z).value == pytest.approx(np.linalg.norm(X.T @ Z, 2), rel=1e-12)


def test_exact_2d_relu_polar_beats_a_dense_angle_grid_and_is_attained():
    rng = np.random.default_rng(1)
    X, Z = rng.standard_normal((25, 2)), rng.standard_normal((25, 2))
    value, u, v = relu_polar_exact_2d(X, Z)
    angles = np.linspace(0, 2 * np.pi, 20001)
    grid = max(np.linalg.norm(Z.T @ np.maximum(X @ np.array([np.cos(a), np.sin(a)]), 0)) for a in angles)
    assert grid <= value * (1 + 1e-12)
    assert value == pytest.approx(grid, rel=1e-6)
    assert np.maximum(X @ u, 0) @ Z @ v == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_heuristic_relu_polar_is_a_lower_bound_that_matches_the_exact_one(seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, 30)
    X = np.c_[x, np.ones(30)] if seed % 2 else rng.standard_normal((30, 2))
    Z = rng.standard_normal((30, 1 + seed % 2))
    net = ParallelNetwork.random(0, [2, 1, Z.shape[1]])
    exact, heuristic = polar(net, X, Z), polar(net, X, Z, method="heuristic")
    assert exact.exact and not heuristic.exact
    assert heuristic.value <= exact.value * (1 + 1e-9)
    assert heuristic.value == pytest.approx(exact.value, rel=1e-6)
