"""cp_symmetric on exact low-rank symmetric tensors: recovery to 1e-8, dense or through a counting operator."""

import numpy as np
import pytest

from nnlift.tensor import CPResult, cp_symmetric

from ._helpers import CountingOperator, low_rank_tensor, match_errors, random_components

SIZES = [(3, 2), (3, 3), (10, 10), (20, 5), (50, 10)]


@pytest.mark.parametrize("order", [3, 4])
@pytest.mark.parametrize("d, k", SIZES)
@pytest.mark.parametrize("orthogonal", [True, False])
def test_exact_recovery_dense_and_operator(order, d, k, orthogonal):
    rng = np.random.default_rng(100 * d + 10 * k + order)
    weights, factors = random_components(rng, d, k, orthogonal)
    T = low_rank_tensor(weights, factors, order)
    op = CountingOperator(T)

    dense = cp_symmetric(T, k, random_state=0)
    implicit = cp_symmetric(op, k, random_state=0)

    for result in (dense, implicit):
        factor_err, weight_err = match_errors(result.weights, result.factors, weights, factors, order)
        assert factor_err < 1e-8 and weight_err < 1e-8
        assert result.diagnostics["residual"] < 1e-10
    # range finder (subspace_iter contract calls) unless d == k, one image (a contract call on polarization
    # probes: the operator has no contract_image), one refinement call that finds the factors already converged
    expected = 1 + 1 + (0 if d == k else 4)
    assert op.calls == implicit.diagnostics["passes"] == dense.diagnostics["passes"] == expected
    assert op.project_calls == 0
    np.testing.assert_allclose(implicit.weights, dense.weights, rtol=1e-9)
    np.testing.assert_allclose(implicit.factors, dense.factors, atol=1e-9)


def test_result_conventions_and_diagnostics():
    rng = np.random.default_rng(5)
    weights, factors = random_components(rng, 12, 4, orthogonal=False)
    result = cp_symmetric(low_rank_tensor(weights, factors, 3), 4, random_state=0)
    assert isinstance(result, CPResult)
    got_weights, got_factors = result
    assert got_weights is result.weights and got_factors is result.factors
    assert got_weights.shape == (4,) and got_factors.shape == (12, 4)
    np.testing.assert_allclose(np.linalg.norm(got_factors, axis=0), 1.0, rtol=1e-12)
    assert np.all(np.diff(np.abs(got_weights)) <= 0)
    largest = got_factors[np.argmax(np.abs(got_factors), axis=0), np.arange(4)]
    assert np.all(largest > 0)
    diag = result.diagnostics
    assert diag["method"] == "auto" and diag["subspace"] == "range_finder"
    assert diag["decomposer"] in diag["candidate_residuals"]
    assert set(diag["candidate_residuals"]) == {"jennrich", "power"}
    assert diag["subspace_gap"] > 1e8 and len(diag["subspace_singular_values"]) >= 4
    assert diag["iterations"]["subspace"] == 4


@pytest.mark.parametrize("order", [3, 4])
def test_even_and_odd_sign_convention(order):
    """Building T from -a_j gives (-1)^m T: the same canonical factors, weights times (-1)^m."""
    rng = np.random.default_rng(8)
    weights, factors = random_components(rng, 6, 3, orthogonal=True)
    result = cp_symmetric(low_rank_tensor(weights, factors, order), 3, random_state=1)
    again = cp_symmetric(low_rank_tensor(weights, -factors, order), 3, random_state=1)
    np.testing.assert_allclose(again.weights, (-1) ** order * result.weights, atol=1e-10)
    np.testing.assert_allclose(again.factors, result.factors, atol=1e-10)
    np.testing.assert_allclose(np.sort(result.weights), np.sort(weights * np.sign(
        factors[np.argmax(np.abs(factors), axis=0), np.arange(3)]) ** order), atol=1e-10)


@pytest.mark.parametrize("order", [3, 4])
def test_refine_iter_zero_uses_no_extra_pass(order):
    rng = np.random.default_rng(11)
    weights, factors = random_components(rng, 15, 4, orthogonal=False)
    op = CountingOperator(low_rank_tensor(weights, factors, order))
    result = cp_symmetric(op, 4, random_state=0, refine_iter=0, subspace_iter=3)
    assert op.contract_calls == 4 and op.project_calls == 0 and result.diagnostics["passes"] == 4
    assert max(match_errors(result.weights, result.factors, weights, factors, order)) < 1e-8


@pytest.mark.parametrize("method", ["jennrich", "als"])
def test_single_decomposer_methods(method):
    rng = np.random.default_rng(21)
    weights, factors = random_components(rng, 20, 5, orthogonal=False)
    result = cp_symmetric(low_rank_tensor(weights, factors, 3), 5, method=method, random_state=0)
    assert result.diagnostics["decomposer"] == method
    assert max(match_errors(result.weights, result.factors, weights, factors, 3)) < 1e-8


@pytest.mark.parametrize("order", [3, 4])
def test_power_method_runs_implicitly_on_the_operator(order):
    rng = np.random.default_rng(31)
    weights, factors = random_components(rng, 30, 6, orthogonal=True)
    op = CountingOperator(low_rank_tensor(weights, factors, order))
    result = cp_symmetric(op, 6, method="power", random_state=0)
    diag = result.diagnostics
    assert diag["subspace"] == "power_factors" and diag["decomposer"] == "power"
    assert max(match_errors(result.weights, result.factors, weights, factors, order)) < 1e-8
    # power iterations, one image on the span of the found factors, refinement
    assert op.calls == diag["passes"] == diag["iterations"]["power"] + 1 + diag["iterations"]["refine"]
    assert op.project_calls == 0
