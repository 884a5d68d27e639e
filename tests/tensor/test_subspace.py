"""Range finder on operators (mixed signs, no informative second moment) and whitening by a PSD M2."""

import numpy as np
import pytest
import scipy.linalg

from nnlift.tensor import NotWhitenableError, cp_symmetric, range_finder, whiten

from ._helpers import CountingOperator, low_rank_tensor, match_errors, random_components, symmetric_noise


@pytest.mark.parametrize("order", [3, 4])
def test_range_finder_spans_mixed_sign_components(order):
    rng = np.random.default_rng(60 + order)
    weights, factors = random_components(rng, 40, 8, orthogonal=False)
    weights[::2] = np.abs(weights[::2])
    weights[1::2] = -np.abs(weights[1::2])
    # the second moment of these components would be sum_j lambda_j a_j a_j^T with mixed signs: not PSD
    op = CountingOperator(low_rank_tensor(weights, factors, order))
    Q, singular_values = range_finder(op, 8, np.random.default_rng(0), oversample=4, n_iter=3)
    assert op.contract_calls == 3 and op.project_calls == 0
    assert Q.shape == (40, 8)
    np.testing.assert_allclose(Q.T @ Q, np.eye(8), atol=1e-12)
    assert np.max(scipy.linalg.subspace_angles(Q, factors)) < 1e-10
    assert singular_values[7] > 1e8 * singular_values[8]


def test_range_finder_under_noise_stays_close_to_the_span():
    rng = np.random.default_rng(70)
    weights, factors = random_components(rng, 50, 10, orthogonal=False)
    eps = 0.5
    op = CountingOperator(low_rank_tensor(weights, factors, 3) + symmetric_noise(rng, 50, 3, eps))
    Q, _ = range_finder(op, 10, np.random.default_rng(0), oversample=10, n_iter=4)
    assert np.max(scipy.linalg.subspace_angles(Q, factors)) < 20 * eps / np.min(np.abs(weights))


def _psd_second_moment(rng, factors):
    return factors @ np.diag(rng.uniform(0.5, 2.0, factors.shape[1])) @ factors.T


def test_whiten_makes_components_orthonormal():
    rng = np.random.default_rng(80)
    _, factors = random_components(rng, 15, 5, orthogonal=False)
    second = rng.uniform(0.5, 2.0, 5)
    W = whiten(factors @ np.diag(second) @ factors.T, 5).matrix
    whitened = W.T @ factors * np.sqrt(second)
    np.testing.assert_allclose(whitened.T @ whitened, np.eye(5), atol=1e-10)


@pytest.mark.parametrize("order", [3, 4])
@pytest.mark.parametrize("method", ["auto", "power", "jennrich"])
def test_cp_with_whitening_skips_the_range_finder(order, method):
    rng = np.random.default_rng(90 + order)
    weights, factors = random_components(rng, 20, 5, orthogonal=False)
    op = CountingOperator(low_rank_tensor(weights, factors, order))
    result = cp_symmetric(op, 5, method=method, random_state=0, second_moment=_psd_second_moment(rng, factors))
    diag = result.diagnostics
    assert diag["whitening"] == "used" and diag["subspace"] == "whitening"
    assert max(match_errors(result.weights, result.factors, weights, factors, order)) < 1e-8
    # one image, one converged refinement call, no range finder
    assert op.calls == diag["passes"] == 2


@pytest.mark.parametrize("make_bad, reason", [
    (lambda A, rng: A @ np.diag([1.0, -1.0, 1.0, 1.0]) @ A.T, "negative eigenvalue"),
    (lambda A, rng: A[:, :3] @ A[:, :3].T, "not numerically rank 4"),
    (lambda A, rng: A @ A.T + 0.5 * np.eye(A.shape[0]), "not numerically rank 4"),
])
def test_unusable_second_moment_falls_back_to_the_range_finder(make_bad, reason):
    rng = np.random.default_rng(100)
    weights, factors = random_components(rng, 12, 4, orthogonal=False)
    bad = make_bad(factors, rng)
    with pytest.raises(NotWhitenableError, match=reason):
        whiten(bad, 4)
    result = cp_symmetric(low_rank_tensor(weights, factors, 3), 4, random_state=0, second_moment=bad)
    assert result.diagnostics["whitening"].startswith("rejected:") and reason in result.diagnostics["whitening"]
    assert result.diagnostics["subspace"] == "range_finder"
    assert max(match_errors(result.weights, result.factors, weights, factors, 3)) < 1e-8
