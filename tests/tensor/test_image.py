"""The subspace image T(I, Q, ..., Q), its polarization identities, and the lift of subspace factors out of it."""

import numpy as np
import pytest

from nnlift.tensor import DenseSymmetricTensor, cp_symmetric
from nnlift.tensor._multilinear import project_dense
from nnlift.tensor.image import (
    fit_weights_on_image,
    from_polarization,
    image_dense,
    lift_factors,
    polarization_probes,
    subspace_image,
)

from ._helpers import (
    CountingOperator,
    einsum_contract,
    low_rank_tensor,
    match_errors,
    random_components,
    symmetric_noise,
)


def _einsum_image(T, Q):
    letters = "abc"[: T.ndim - 1]
    spec = "i" + "jkl"[: T.ndim - 1] + "," + ",".join(f"{j}{a}" for j, a in zip("jkl", letters, strict=False))
    return np.einsum(spec + "->i" + letters, T, *[Q] * (T.ndim - 1))


@pytest.mark.parametrize("order", [3, 4])
def test_polarization_recovers_the_image_exactly(order):
    rng = np.random.default_rng(order)
    T = symmetric_noise(rng, 7, order, 5.0)  # full rank: nothing low-rank to lean on
    Q = np.linalg.qr(rng.standard_normal((7, 4)))[0]
    probes = polarization_probes(Q, order)
    assert probes.shape[1] == {3: 10, 4: 20}[order]  # the number of distinct entries of a symmetric r^(m-1) array
    expected = _einsum_image(T, Q)
    np.testing.assert_allclose(from_polarization(einsum_contract(T, probes), 4, order), expected, atol=1e-12)
    np.testing.assert_allclose(image_dense(T, Q), expected, atol=1e-12)
    np.testing.assert_allclose(subspace_image(DenseSymmetricTensor(T), Q), expected, atol=1e-12)
    np.testing.assert_allclose(subspace_image(CountingOperator(T), Q), expected, atol=1e-12)


@pytest.mark.parametrize("order", [3, 4])
def test_lift_is_exact_from_any_basis_on_an_exact_tensor(order):
    """T(Q, ..., Q) = sum_j lambda_j (Q^T a_j)^{⊗m} exactly, so its factors are the projections Q^T a_j, and the
    ALS step through the image maps them back to a_j exactly, however little of a_j the basis holds; the subspace
    factors Q b_j are off by the basis error."""
    rng = np.random.default_rng(10 + order)
    weights, factors = random_components(rng, 30, 5, orthogonal=False)
    T = low_rank_tensor(weights, factors, order)
    Q = np.linalg.qr(rng.standard_normal((30, 8)))[0]  # a random basis: ||Q^T a_j|| ~ 0.5
    result = cp_symmetric(T, 5, random_state=0, refine_iter=0, image_oversample=0)  # through cp for contrast
    assert max(match_errors(result.weights, result.factors, weights, factors, order)) < 1e-8
    coefficients = cp_symmetric(project_dense(T, Q), 5, random_state=0).factors
    subspace_error = match_errors(weights, Q @ coefficients, weights, factors, order)[0]
    lifted = lift_factors(image_dense(T, Q), Q, coefficients)
    assert subspace_error > 0.3
    assert match_errors(weights, lifted, weights, factors, order)[0] < 1e-8
    lifted_weights = fit_weights_on_image(image_dense(T, Q), Q, lifted)  # a factor's sign flips odd-order weights
    np.testing.assert_allclose(np.sort(np.abs(lifted_weights)), np.sort(np.abs(weights)), rtol=1e-8)


def test_image_weights_are_exact_for_exact_factors():
    rng = np.random.default_rng(3)
    weights, factors = random_components(rng, 12, 4, orthogonal=False)
    T = low_rank_tensor(weights, factors, 3)
    Q = np.linalg.qr(rng.standard_normal((12, 6)))[0]  # any basis: the first mode is kept in full
    np.testing.assert_allclose(fit_weights_on_image(image_dense(T, Q), Q, factors), weights, rtol=1e-10)


def test_two_passes_sketch_and_image():
    """subspace_iter=1, refine_iter=0 reads the operator twice and still fits the noisy tensor to the lift's
    accuracy, well below the subspace factors' error."""
    rng = np.random.default_rng(8)
    weights, factors = random_components(rng, 40, 6, orthogonal=False)
    op = CountingOperator(low_rank_tensor(weights, factors, 3) + symmetric_noise(rng, 40, 3, 0.3))
    result = cp_symmetric(op, 6, method="jennrich", random_state=0, subspace_iter=1, refine_iter=0,
                          oversample=20)
    assert op.calls == result.diagnostics["passes"] == 2
    lift = result.diagnostics["lift"]
    assert lift["kept"] == "lifted" and lift["residual_lifted"] < lift["residual_subspace"]
    factor_err, weight_err = match_errors(result.weights, result.factors, weights, factors, 3)
    assert factor_err < 0.05 and weight_err < 0.1


def test_projection_instead_of_the_image_where_the_image_costs_too_much():
    """d = 200 with r = 8: the image's d r(r+1)/2 products per row cost more than twice r^3 + d r + 2 d k, so the
    default projects and lets refinement's first contract call lift; exact recovery either way."""
    from nnlift.tensor.cp import _image_pays

    assert _image_pays(100, 15, 10, 3, refine_iter=2) and not _image_pays(1000, 55, 50, 3, refine_iter=2)
    assert _image_pays(1000, 55, 50, 3, refine_iter=0)
    rng = np.random.default_rng(4)
    weights, factors = random_components(rng, 200, 3, orthogonal=False)
    op = CountingOperator(low_rank_tensor(weights, factors, 3))
    result = cp_symmetric(op, 3, random_state=0)
    assert op.project_calls == 1 and result.diagnostics["lift"]["kept"].startswith("subspace")
    assert max(match_errors(result.weights, result.factors, weights, factors, 3)) < 1e-8
    two_pass = CountingOperator(low_rank_tensor(weights, factors, 3))
    result = cp_symmetric(two_pass, 3, random_state=0, subspace_iter=1, refine_iter=0, fallback=False)
    assert two_pass.project_calls == 0 and two_pass.calls == 2 and result.diagnostics["lift"]["kept"] == "lifted"
