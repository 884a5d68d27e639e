"""The small-tensor decomposers alone: Jennrich, ALS, the robust tensor power method (and tensorly's)."""

import numpy as np
import pytest
import tensorly
from tensorly.decomposition import symmetric_parafac_power_iteration

from nnlift.tensor import DenseSymmetricTensor, jennrich_cp, symmetric_als, tensor_power_method

from ._helpers import CountingOperator, low_rank_tensor, match_errors, random_components


@pytest.mark.parametrize("order", [3, 4])
@pytest.mark.parametrize("k", [2, 5, 8])
def test_jennrich_recovers_non_orthogonal_exact_tensors(order, k):
    rng = np.random.default_rng(10 * k + order)
    weights, factors = random_components(rng, k, k, orthogonal=False)
    T = low_rank_tensor(weights, factors, order)
    got_weights, got_factors, residual = jennrich_cp(T, k, np.random.default_rng(0), n_pencils=3)
    assert residual < 1e-10
    assert max(match_errors(got_weights, got_factors, weights, factors, order)) < 1e-8


def test_jennrich_projects_when_dimension_exceeds_rank():
    rng = np.random.default_rng(3)
    weights, factors = random_components(rng, 12, 4, orthogonal=False)
    got_weights, got_factors, _ = jennrich_cp(low_rank_tensor(weights, factors, 3), 4, rng, n_pencils=2)
    assert got_factors.shape == (12, 4)
    assert max(match_errors(got_weights, got_factors, weights, factors, 3)) < 1e-8


@pytest.mark.parametrize("order", [3, 4])
def test_als_improves_a_perturbed_start(order):
    rng = np.random.default_rng(40 + order)
    weights, factors = random_components(rng, 7, 5, orthogonal=False)
    T = low_rank_tensor(weights, factors, order)
    start = factors + 0.05 * rng.standard_normal(factors.shape)
    start /= np.linalg.norm(start, axis=0)
    start_weights = weights * (1 + 0.05 * rng.standard_normal(5))
    start_residual = np.linalg.norm(T - low_rank_tensor(start_weights, start, order)) / np.linalg.norm(T)
    got_weights, got_factors, residual, sweeps = symmetric_als(T, start_weights, start, n_iter=1000, tol=1e-14)
    assert start_residual > 1e-2 and residual < 1e-10
    assert 1 < sweeps <= 1000
    assert max(match_errors(got_weights, got_factors, weights, factors, order)) < 1e-8


def test_als_never_returns_a_worse_fit_than_its_start():
    rng = np.random.default_rng(2)
    weights, factors = random_components(rng, 5, 3, orthogonal=True)
    T = low_rank_tensor(weights, factors, 3)
    got_weights, got_factors, residual, _ = symmetric_als(T, weights, factors, n_iter=5, tol=1e-12)
    assert residual < 1e-14
    assert max(match_errors(got_weights, got_factors, weights, factors, 3)) < 1e-12


@pytest.mark.parametrize("order", [3, 4])
def test_power_method_recovers_orthogonal_components_with_counted_calls(order):
    rng = np.random.default_rng(50 + order)
    weights, factors = random_components(rng, 9, 9, orthogonal=True)
    op = CountingOperator(low_rank_tensor(weights, factors, order))
    got_weights, got_factors, calls = tensor_power_method(op, 9, np.random.default_rng(0), n_restarts=8,
                                                          n_iter=60, tol=1e-12)
    assert max(match_errors(got_weights, got_factors, weights, factors, order)) < 1e-8
    assert op.contract_calls == calls and op.project_calls == 0
    assert calls <= 9 * 2 * 60


def test_power_method_matches_tensorly_on_an_orthogonal_tensor():
    rng = np.random.default_rng(7)
    factors = np.linalg.qr(rng.standard_normal((5, 3)))[0]
    weights = np.array([3.0, 2.0, 1.2])
    T = low_rank_tensor(weights, factors, 3)
    np.random.seed(0)  # noqa: NPY002 -- tensorly draws its starts from numpy's global generator
    tl_weights, tl_factors = symmetric_parafac_power_iteration(tensorly.tensor(T), 3, n_repeat=10,
                                                               n_iteration=20)
    ours_weights, ours_factors, _ = tensor_power_method(DenseSymmetricTensor(T), 3, np.random.default_rng(0),
                                                        n_restarts=10, n_iter=60, tol=1e-12)
    tl_weights, tl_factors = np.asarray(tl_weights), np.asarray(tl_factors)
    assert max(match_errors(ours_weights, ours_factors, tl_weights, tl_factors, 3)) < 1e-8
    assert max(match_errors(ours_weights, ours_factors, weights, factors, 3)) < 1e-8
