"""The polar Ω°(Z) = sup_{θ(w) <= 1} <Z, φ(X, w)>: exact cases and the heuristic against them."""

import numpy as np
import pytest

from nnlift.homogeneous import (
    ParallelNetwork,
    activation_patterns,
    pattern_count_bound,
    polar,
    relu_polar_enumerated,
    relu_polar_exact_2d,
    relu_upper_bound,
)


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


def _cube_grid(k):
    """Unit vectors through a k x k grid on each face of [-1, 1]³: every unit vector is within h/√2 of one,
    h = 2/(k-1) (radial projection onto the ball is 1-Lipschitz outside it)."""
    g = np.linspace(-1, 1, k)
    A, B = np.meshgrid(g, g)
    face = np.c_[A.ravel(), B.ravel(), np.ones(k * k)]
    P = np.concatenate([np.roll(s * face, i, axis=1) for i in range(3) for s in (1, -1)]).T
    return P / np.linalg.norm(P, axis=0), 2 / (k - 1) / np.sqrt(2)


def _bias_grid():
    g = np.linspace(-1, 1, 5)
    return np.array([(a, b, 1.0) for a in g for b in g])


@pytest.mark.parametrize("case", ["random-1", "random-2", "grid-bias"])
def test_enumerated_relu_polar_brackets_a_cube_grid_in_3d(case):
    rng = np.random.default_rng(7)
    X = _bias_grid() if case == "grid-bias" else rng.standard_normal((15, 3))   # the grid has 3 rows per line
    Z = rng.standard_normal((len(X), 2 if case == "random-2" else 1))
    value, u, v = relu_polar_enumerated(X, Z)
    P, radius = _cube_grid(120)
    grid = np.linalg.norm(Z.T @ np.maximum(X @ P, 0), axis=0).max()
    lipschitz = np.linalg.norm(Z, 2) * np.linalg.norm(X, 2)
    assert grid <= value * (1 + 1e-12)
    assert value <= grid + lipschitz * radius
    assert np.maximum(X @ u, 0) @ Z @ v == pytest.approx(value, rel=1e-12)      # attained
    assert np.linalg.norm(u) == pytest.approx(1.0) and np.linalg.norm(v) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(3))
def test_enumerated_relu_polar_equals_the_2d_arc_sweep(seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, 20)
    X = np.c_[x, np.ones(20)] if seed else rng.standard_normal((20, 2))
    Z = rng.standard_normal((20, 1 + seed % 2))
    assert relu_polar_enumerated(X, Z)[0] == pytest.approx(relu_polar_exact_2d(X, Z)[0], rel=1e-12)


def test_activation_patterns_are_all_the_cells():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((10, 3))
    patterns = {p.tobytes() for p in activation_patterns(X)}
    assert len(patterns) == pattern_count_bound(10, 3) == 2 * (1 + 9 + 36)     # general position: Cover's count
    U = rng.standard_normal((3, 200_000))
    assert {p.tobytes() for p in (X @ U > 0).T} <= patterns
    rank_two = np.c_[X[:, :2], X[:, :2] @ [1.0, -2.0]]                          # rank 2: the 2-D arrangement's 20
    assert len(activation_patterns(rank_two)) == 20


def test_ascent_misses_a_maximum_that_the_exact_polar_finds():
    rng = np.random.default_rng(29)          # found by comparing the two on random instances
    X, z = rng.standard_normal((12, 3)), rng.standard_normal((12, 1))
    net = ParallelNetwork.random(0, [3, 1, 1])
    exact, ascent = polar(net, X, z), polar(net, X, z, method="heuristic")
    assert exact.exact and exact.upper == pytest.approx(exact.value, rel=1e-11)
    assert ascent.value < exact.value * (1 - 1e-3) and not ascent.exact
    P, _ = _cube_grid(150)                   # brute force beats the ascent too: its value is not the polar
    assert ascent.value < np.abs(z[:, 0] @ np.maximum(X @ P, 0)).max() <= exact.value * (1 + 1e-12)
    assert ascent.upper >= exact.value


def test_polar_methods_and_errors():
    rng = np.random.default_rng(4)
    X, Z = rng.standard_normal((20, 3)), rng.standard_normal((20, 1))
    deep = ParallelNetwork.random(0, [3, 3, 1])
    with pytest.raises(ValueError, match="no exact polar"):
        polar(ParallelNetwork.random(0, [3, 3, 3, 1]), X, Z, method="exact")
    with pytest.raises(ValueError, match="method must be"):
        polar(deep, X, Z, method="grid")
    wide = rng.standard_normal((200, 6))
    with pytest.raises(ValueError, match="no exact polar"):
        polar(ParallelNetwork.random(0, [6, 1, 1]), wide, rng.standard_normal((200, 1)), method="exact")


def test_deep_upper_bound_holds_for_sampled_and_ascended_subnetworks():
    rng = np.random.default_rng(5)
    X = np.c_[rng.uniform(-1, 1, (30, 2)), np.ones(30)]
    Z = rng.standard_normal((30, 1))
    net = ParallelNetwork.random(0, [3, 3, 3, 1])
    bound = relu_upper_bound(net, X, Z)
    ascent = polar(net, X, Z, n_restarts=64, n_steps=150)
    assert ascent.upper == pytest.approx(bound) and ascent.value <= bound
    assert relu_polar_enumerated(X, Z)[0] <= bound    # a one-hidden unit is a depth-3 unit: relu(relu(a)) = relu(a)
    assert bound < np.linalg.norm(Z) * np.linalg.norm(X, 2)        # tighter than the Lipschitz bound here
    sample = ParallelNetwork.random(20_000, [3, 3, 3, 1], random_state=1)
    values = (sample.subnetwork_outputs(X)[:, :, 0].numpy() @ Z[:, 0]) / sample.theta().numpy()
    assert np.abs(values).max() <= bound
