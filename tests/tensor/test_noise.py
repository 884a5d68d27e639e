"""A symmetric Gaussian perturbation of Frobenius norm eps moves the recovered components by O(eps)."""

import numpy as np
import pytest

from nnlift.tensor import cp_symmetric

from ._helpers import CountingOperator, low_rank_tensor, match_errors, random_components, symmetric_noise


@pytest.mark.parametrize("order, d, k", [(3, 8, 4), (3, 50, 10), (4, 8, 4), (4, 20, 5)])
@pytest.mark.parametrize("orthogonal", [True, False])
@pytest.mark.parametrize("eps", [1e-4, 1e-1])
def test_error_is_linear_in_the_perturbation(order, d, k, orthogonal, eps):
    rng = np.random.default_rng(1000 * order + d + k)
    weights, factors = random_components(rng, d, k, orthogonal)
    T = low_rank_tensor(weights, factors, order) + symmetric_noise(rng, d, order, eps)
    result = cp_symmetric(CountingOperator(T), k, random_state=0)
    factor_err, weight_err = match_errors(result.weights, result.factors, weights, factors, order)
    # measured <= 0.15 eps; 20 eps would be vacuous for unit factors at eps = 0.1
    assert factor_err <= eps and weight_err <= eps
    # the true components already leave at most the projected noise, ||E_P|| <= eps, unexplained
    assert result.diagnostics["residual"] <= eps / np.linalg.norm(T)


def test_refinement_on_the_operator_reduces_the_subspace_error():
    rng = np.random.default_rng(5)
    weights, factors = random_components(rng, 30, 6, orthogonal=False)
    T = low_rank_tensor(weights, factors, 3) + symmetric_noise(rng, 30, 3, 0.3)
    errors = {}
    for refine_iter in (0, 10):
        result = cp_symmetric(T, 6, random_state=0, refine_iter=refine_iter)
        errors[refine_iter] = match_errors(result.weights, result.factors, weights, factors, 3)[0]
    assert errors[10] < 0.6 * errors[0]
