"""The block Krylov method for both ends of a spectrum: against eigh on matrices with clustered ends, warm starts
from perturbed eigenvectors, its stopping rule, and `track(method="block")` against the dense Hessian and ARPACK."""

import numpy as np
import pytest
from torch import nn

from nnlift.landscape.block_krylov import block_extreme_pairs
from nnlift.landscape.tracking import track


def _clustered(P=300, seed=0):
    """A symmetric matrix whose bottom is a tight cluster of 8 negative eigenvalues (as at a network's saddle)
    and whose top is 12 well separated ones; its eigenvectors Q (columns) and eigenvalues."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((P, P)))
    values = np.r_[np.linspace(-0.05, -0.045, 8), rng.uniform(-0.01, 0.01, P - 20), np.sort(rng.uniform(1, 5, 12))]
    return Q @ np.diag(values) @ Q.T, Q, values


def _counting(A):
    count = [0]

    def matmat(V):
        count[0] += V.shape[1]
        return A @ V

    return matmat, count


@pytest.mark.parametrize("tol", [1e-4, 1e-10])
def test_both_ends_equal_eigh_with_residuals_under_the_stopping_rule(tol):
    A, _, values = _clustered()
    exact = np.sort(values)
    matmat, count = _counting(A)
    found = block_extreme_pairs(matmat, 300, np.random.default_rng(1).standard_normal((300, 10)), n_top=5,
                                n_bottom=5, tol=tol)
    assert found["converged"] and found["products"] == count[0] < 300
    top, top_vectors = found["top"]
    bottom, bottom_vectors = found["bottom"]
    assert np.all(np.diff(top) <= 0) and np.all(np.diff(bottom) >= 0)
    spread = exact[-1] - bottom
    assert np.all(np.linalg.norm(A @ top_vectors - top_vectors * top, axis=0) <= tol * np.abs(top) * 1.0001)
    assert np.all(np.linalg.norm(A @ bottom_vectors - bottom_vectors * bottom, axis=0) <= tol * spread * 1.0001)
    # a residual r bounds the eigenvalue error by r²/gap inside a cluster-free end and by r next to a cluster
    np.testing.assert_allclose(top, exact[::-1][:5], rtol=0, atol=tol * 5)
    np.testing.assert_allclose(bottom, exact[:5], rtol=0, atol=tol * 5)


def test_a_warm_start_from_perturbed_eigenvectors_takes_fewer_products():
    A, Q, values = _clustered()
    order = np.argsort(values)
    wanted = np.r_[order[-5:], order[:5]]
    rng = np.random.default_rng(2)
    cold = block_extreme_pairs(_counting(A)[0], 300, rng.standard_normal((300, 10)), n_top=5, n_bottom=5, tol=1e-8)
    warm = block_extreme_pairs(_counting(A)[0], 300, Q[:, wanted] + 1e-3 * rng.standard_normal((300, 10)),
                               n_top=5, n_bottom=5, tol=1e-8)
    assert warm["converged"] and warm["products"] < 0.8 * cold["products"]
    np.testing.assert_allclose(warm["bottom"][0], cold["bottom"][0], rtol=0, atol=1e-7)


def test_it_stops_unconverged_at_the_product_cap_and_is_exact_once_the_basis_is_full():
    A, _, values = _clustered(P=60)
    start = np.random.default_rng(3).standard_normal((60, 4))
    capped = block_extreme_pairs(_counting(A)[0], 60, start, n_top=2, n_bottom=2, tol=1e-14, max_products=8)
    assert not capped["converged"] and capped["products"] == 8
    full = block_extreme_pairs(_counting(A)[0], 60, start, n_top=2, n_bottom=2, tol=0.0, max_basis=60)
    assert full["converged"] and full["products"] <= 60 + 4
    np.testing.assert_allclose(full["bottom"][0], np.sort(values)[:2], rtol=0, atol=1e-12)


def test_track_by_the_block_method_equals_the_dense_hessian_and_arpack(run):
    problem, data, checkpoints, exact = run
    block = {warm: track(problem.model, problem.loss_fn, data, checkpoints, k=3, tol=1e-12, warm_start=warm,
                         method="block") for warm in (True, False)}
    arpack = track(problem.model, problem.loss_fn, data, checkpoints, k=3, tol=1e-12)
    for result in block.values():
        np.testing.assert_allclose(result.top, exact[:, ::-1][:, :3], rtol=0, atol=1e-8)
        np.testing.assert_allclose(result.bottom, exact[:, :3], rtol=0, atol=1e-8)
        np.testing.assert_array_equal(result.n_negative, arpack.n_negative)
        assert result.method == "block" and (result.end_matvec[:, 1] == 0).all()
    assert block[True].n_matvec[0] == block[False].n_matvec[0]


def test_track_block_warm_starts_save_products_on_slowly_moving_checkpoints(slow_run):
    model, (X, y), checkpoints = slow_run
    cold, warm = (track(model, nn.functional.mse_loss, (X, y), checkpoints, k=2, tol=1e-10, warm_start=warm,
                        method="block") for warm in (False, True))
    assert (warm.n_matvec[1:] < cold.n_matvec[1:]).all()  # 62 vs 73 per checkpoint (ARPACK: 39 vs 56)
    np.testing.assert_allclose(warm.bottom, cold.bottom, rtol=0, atol=1e-9)
    arpack = track(model, nn.functional.mse_loss, (X, y), checkpoints, k=2, tol=1e-10)
    np.testing.assert_allclose(warm.bottom, arpack.bottom, rtol=0, atol=1e-9)
    np.testing.assert_allclose(warm.top, arpack.top, rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="method must be one of"):
        track(model, nn.functional.mse_loss, (X, y), checkpoints, k=2, method="lobpcg")


def test_a_tolerance_below_rounding_ends_unconverged_with_consistent_pairs_and_bad_input_is_refused():
    A, _, values = _clustered(P=120)
    start = np.random.default_rng(4).standard_normal((120, 4))
    found = block_extreme_pairs(_counting(A)[0], 120, start, n_top=2, n_bottom=2, tol=1e-30, max_basis=16)
    assert not found["converged"]
    top_values, top_vectors = found["top"]
    assert top_vectors.shape == (120, 2)
    np.testing.assert_allclose(top_values, np.sort(values)[::-1][:2], rtol=1e-10)
    with pytest.raises(ValueError, match="non-zero column"):
        block_extreme_pairs(_counting(A)[0], 120, np.zeros((120, 2)), n_top=1, n_bottom=1, tol=1e-8)
    with pytest.raises(ValueError, match="not both 0"):
        block_extreme_pairs(_counting(A)[0], 120, start, n_top=0, n_bottom=0, tol=1e-8)
    with pytest.raises(ValueError, match="tol"):
        block_extreme_pairs(_counting(A)[0], 120, start, n_top=1, n_bottom=1, tol=-1.0)
