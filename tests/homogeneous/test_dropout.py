"""Dropout in U Vᵀ: the closed-form regulariser against enumeration, Monte Carlo and the convex problem."""

import cvxpy as cp
import numpy as np
import pytest

from nnlift.homogeneous.dropout import (
    dropout_objective,
    dropout_objective_exact,
    dropout_objective_monte_carlo,
    fit_dropout_factorization,
    squared_nuclear_denoise,
)


@pytest.fixture
def factors():
    rng = np.random.default_rng(0)
    return rng.standard_normal((8, 6)), rng.standard_normal((8, 4)), rng.standard_normal((6, 4))


@pytest.mark.parametrize("retain", [0.2, 0.5, 0.9])
def test_closed_form_equals_enumeration_and_monte_carlo(factors, retain):
    Y, U, V = factors
    closed = dropout_objective(Y, U, V, retain)
    assert dropout_objective_exact(Y, U, V, retain) == pytest.approx(closed, rel=1e-12)
    mean, stderr = dropout_objective_monte_carlo(Y, U, V, retain, n_samples=40_000, random_state=1)
    assert abs(mean - closed) <= 4 * stderr
    assert dropout_objective(Y, U, V, 1.0) == pytest.approx(np.sum((Y - U @ V.T) ** 2))


def test_squared_nuclear_denoise_matches_cvxpy():
    Y = np.random.default_rng(1).standard_normal((7, 5))
    mu = 0.15
    W, value = squared_nuclear_denoise(Y, mu)
    Wv, t = cp.Variable(Y.shape), cp.Variable()
    problem = cp.Problem(cp.Minimize(cp.sum_squares(Y - Wv) + mu * cp.square(t)), [cp.normNuc(Wv) <= t])
    problem.solve()
    assert value == pytest.approx(problem.value, rel=1e-6)
    np.testing.assert_allclose(W, Wv.value, atol=1e-4)


def test_dropout_factorization_solves_the_squared_nuclear_problem():
    Y = np.random.default_rng(2).standard_normal((8, 6))
    r, retain = 6, 0.6
    _, value = squared_nuclear_denoise(Y, (1 - retain) / (retain * r))
    U, V, fitted = fit_dropout_factorization(Y, r, retain)
    assert fitted == pytest.approx(value, rel=1e-8)
    assert dropout_objective(Y, U, V, retain) == pytest.approx(fitted, rel=1e-12)
