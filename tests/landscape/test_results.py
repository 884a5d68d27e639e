"""What the spectral results carry: Lanczos residuals and `converged`, Hutch++'s standard error, and the diagonal
estimators (Hutchinson's, curvlinops' XDiag), against dense matrices, closed forms and repeated draws."""

import numpy as np
import pytest
import torch
from torch import nn

from nnlift.landscape import (
    GaussNewtonOperator,
    HessianOperator,
    hutchinson_diagonal,
    hutchinson_trace,
    hutchpp_trace,
    lanczos,
    xdiag,
)


def _symmetric(eigenvalues, seed=0) -> np.ndarray:
    Q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((len(eigenvalues), len(eigenvalues))))
    return (Q * eigenvalues) @ Q.T


@pytest.fixture
def hessian(problem, dense):
    op = HessianOperator(problem.model, problem.loss_fn, (problem.X, problem.y))
    return op, dense.hessian(problem.model, problem.loss_fn, problem.X, problem.y).numpy()


@pytest.mark.parametrize(("which", "k"), [("LA", 3), ("SA", 3), ("both", 2), ("LA", 13)])
def test_residuals_are_those_of_the_dense_matrix(hessian, which, k):
    op, H = hessian
    result = lanczos(op, k, which, tol=0, random_state=0)
    expected = np.linalg.norm(H @ result.vectors - result.vectors * result.values, axis=0)
    np.testing.assert_allclose(result.residuals, expected, rtol=0, atol=1e-12)
    assert result.residual_tol == pytest.approx(1000 * np.finfo(np.float64).eps * np.abs(result.values).max())
    assert result.residuals.max() < 1e-10 and result.converged.all()
    if k == 13:
        assert result.n_matvec == 26 + 13


def test_a_non_symmetric_operator_is_not_converged():
    """ARPACK assumes symmetry; an antisymmetric part of size 1e-3 leaves residuals of that order."""
    rng = np.random.default_rng(0)
    K = rng.standard_normal((40, 40))
    A = _symmetric(np.linspace(-1, 3, 40)) + 1e-3 * (K - K.T)
    result = lanczos(A, 2, random_state=0)
    np.testing.assert_allclose(result.residuals, np.linalg.norm(A @ result.vectors - result.vectors * result.values,
                                                                axis=0), rtol=1e-12)
    assert (result.residuals > 1e-3).all() and not result.converged.any()
    symmetric = lanczos(_symmetric(np.linspace(-1, 3, 40)), 2, random_state=0)
    assert symmetric.converged.all() and symmetric.residuals.max() < 3e-10


def test_float32_products_converge_at_their_precision():
    A = torch.tensor(_symmetric(np.linspace(-1, 3, 40)), dtype=torch.float32)
    result = lanczos(A, 2, random_state=0)
    assert result.residual_tol == pytest.approx(3000 * np.finfo(np.float32).eps, rel=1e-6)
    assert result.converged.all() and 1e-8 < result.residuals.max() < 1e-5


def test_hutchpp_standard_error_matches_the_spread_over_seeds():
    """Slowly decaying spectrum, so the deflated part carries real variance: the mean reported standard error is
    the standard deviation of the estimates over 300 seeds to within 10%, and ±2 of it covers about 95%."""
    A = _symmetric(np.random.default_rng(1).uniform(0, 1, 120))
    estimates = [hutchpp_trace(A, 30, random_state=seed) for seed in range(300)]
    values, errors = np.array([e.estimate for e in estimates]), np.array([e.std_error for e in estimates])
    assert errors.mean() / values.std(ddof=1) == pytest.approx(1, abs=0.1)
    assert abs(values.mean() - np.trace(A)) < 4 * values.std(ddof=1) / np.sqrt(300)
    assert 0.9 < np.mean(np.abs(values - np.trace(A)) < 2 * errors) < 0.99


def test_hutchpp_is_exact_with_zero_error_on_low_rank():
    """rank 5 <= n_queries // 3 = 6: Q spans the range, tr(QᵀAQ) is the trace and the deflated part vanishes."""
    A = _symmetric(np.r_[np.arange(1.0, 6.0), np.zeros(95)])
    result = hutchpp_trace(A, 18, random_state=0)
    assert result.estimate == pytest.approx(15, abs=1e-10) and result.std_error < 1e-10
    assert hutchinson_trace(A, 18, random_state=0).std_error > 0.1


def test_hutchinson_diagonal_is_exact_on_a_diagonal_matrix():
    d = np.linspace(-2, 3, 30)
    result = hutchinson_diagonal(np.diag(d), 4, random_state=0)
    np.testing.assert_allclose(result.estimate, d, rtol=0, atol=1e-14)
    np.testing.assert_allclose(result.std_error, 0, atol=1e-14)
    assert result.n_matvec == 4


def test_hutchinson_diagonal_of_the_gauss_newton_matrix(problem, dense):
    """Entry j has variance Σ_{k≠j} G_jk² / m; the estimate is within 4 standard errors of the exact diagonal and the
    reported standard errors are the theoretical ones to within 10%."""
    op = GaussNewtonOperator(problem.model, problem.loss_fn, (problem.X, problem.y))
    G = dense.gauss_newton(problem.model, problem.loss_fn, problem.X, problem.y).numpy()
    m = 2000
    result = hutchinson_diagonal(op, m, batch_size=500, random_state=0)
    exact = np.sqrt((np.sum(G**2, axis=1) - np.diag(G) ** 2) / m)
    assert np.all(np.abs(result.estimate - np.diag(G)) < 4 * result.std_error)
    np.testing.assert_allclose(result.std_error, exact, rtol=0.1)


def test_xdiag_is_exact_on_a_low_rank_gauss_newton_matrix(dense):
    """Three rows and two outputs: rank G <= 6 < 16 / 2 - 1, so XDiag recovers diag(G) to rounding."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    X, y = torch.randn(3, 3, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    G = dense.gauss_newton(model, nn.functional.mse_loss, X, y).numpy()
    assert np.linalg.matrix_rank(G) <= 6
    op = GaussNewtonOperator(model, nn.functional.mse_loss, (X, y))
    state = torch.get_rng_state()
    result = xdiag(op, 16, random_state=0)
    assert torch.equal(torch.get_rng_state(), state)
    np.testing.assert_allclose(result.estimate, np.diag(G), rtol=0, atol=1e-10)
    assert result.std_error is None and result.n_matvec == 16


def test_xdiag_repeats_with_its_seed_and_beats_hutchinson_on_a_decaying_spectrum():
    A = _symmetric(0.5 ** np.arange(60.0))
    first, again = xdiag(A, 20, random_state=3), xdiag(A, 20, random_state=3)
    np.testing.assert_array_equal(first.estimate, again.estimate)
    x_error = np.abs(first.estimate - np.diag(A)).max()
    h_error = np.abs(hutchinson_diagonal(A, 20, random_state=3).estimate - np.diag(A)).max()
    assert x_error < 0.05 * h_error


def test_bad_diagonal_arguments_are_refused():
    A = np.eye(10)
    with pytest.raises(ValueError, match="even, at least 2 and below P = 10"):
        xdiag(A, 5)
    with pytest.raises(ValueError, match="even, at least 2 and below P = 10"):
        xdiag(A, 10)
    with pytest.raises(ValueError, match="at least 2"):
        hutchinson_diagonal(A, 1)
