"""Grow-the-network against the convex problems: nuclear-norm denoising (cvxpy) and Pilanci-Ergen for ReLU."""

import numpy as np
import pytest

from nnlift.bias import nuclear_norm_denoise
from nnlift.homogeneous import certify, grow, grow_matrix_factorization, relu_convex_optimum


@pytest.mark.parametrize("shape, seed, k", [((8, 6), 0, 2), ((8, 6), 1, 4), ((7, 9), 2, 3)])
def test_grown_factorization_matches_cvxpy(shape, seed, k):
    Y = np.random.default_rng(seed).standard_normal(shape)
    sigma = np.linalg.svd(Y, compute_uv=False)
    lam = 0.5 * (sigma[k - 1] + sigma[k])
    W, value = nuclear_norm_denoise(Y, lam)
    grown = grow_matrix_factorization(Y, lam, random_state=seed)
    assert grown.certificate.certified
    assert grown.objective == pytest.approx(value, rel=1e-6)
    U, V = grown.network.factors()
    s_grown, s_cvx = np.linalg.svd(U @ V.T, compute_uv=False), np.linalg.svd(W, compute_uv=False)
    assert np.sum(s_grown > 1e-5 * s_grown[0]) == np.sum(s_cvx > 1e-5 * s_cvx[0]) == k
    polars = [h["polar"] for h in grown.history]
    assert all(p > 1 for p in polars[:-1]) and polars[-1] <= 1 + 1e-6
    objectives = [h["objective"] for h in grown.history]
    assert np.all(np.diff(objectives) < 0)               # every added unit decreases the objective


def test_grown_relu_network_reaches_the_convex_optimum():
    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(-2, 2, 25))
    y = np.abs(x) - 0.5 * np.maximum(x - 0.7, 0) + 0.1 * rng.standard_normal(25)
    X = np.c_[x, np.ones(25)]
    value, _ = relu_convex_optimum(X, y, 0.2)
    grown = grow(X, y, 0.2, polar_method="heuristic", n_restarts=32, n_steps=150)
    heuristic = grown.certificate                         # the ascent stops grow but cannot certify
    assert not heuristic.certified and not heuristic.polar_exact and heuristic.polar <= 1 + 1e-4 < heuristic.polar_upper
    assert grown.objective == pytest.approx(value, rel=1e-6)
    exact = certify(grown.network, X, y, 0.2)             # the arc sweep's exact polar certifies the same point
    assert exact.certified and exact.polar_exact and exact.polar == pytest.approx(heuristic.polar, abs=1e-6)
