"""A symmetric Gaussian perturbation of Frobenius norm eps moves the recovered components by O(eps)."""

import numpy as np
import pytest

from nnlift.tensor import DenseSymmetricTensor, cp_symmetric, range_finder
from nnlift.tensor._multilinear import project_dense

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


def test_lift_and_refinement_reduce_the_subspace_error():
    """The subspace factors Q b_j carry the basis error; the lift out of the image removes most of it in the same
    pass, and refinement on the operator (10 more calls) converges to the same fixed point."""
    rng = np.random.default_rng(5)
    weights, factors = random_components(rng, 30, 6, orthogonal=False)
    T = low_rank_tensor(weights, factors, 3) + symmetric_noise(rng, 30, 3, 0.3)
    errors = {}
    for refine_iter in (0, 10):
        result = cp_symmetric(T, 6, random_state=0, refine_iter=refine_iter)
        errors[refine_iter] = match_errors(result.weights, result.factors, weights, factors, 3)[0]
        lift = result.diagnostics["lift"]
        assert lift["kept"] == "lifted" and lift["residual_lifted"] < lift["residual_subspace"]
    Q = range_finder(DenseSymmetricTensor(T), 11, np.random.default_rng(0), oversample=5, n_iter=4)[0]
    subspace_factors = cp_symmetric(project_dense(T, Q), 6, random_state=0).factors
    subspace_error = match_errors(np.ones(6), Q @ subspace_factors, weights, factors, 3)[0]
    assert errors[0] < 0.6 * subspace_error
    assert errors[10] == pytest.approx(errors[0], rel=0.05)
