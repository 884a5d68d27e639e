"""Lanczos, Hutchinson, Hutch++, SLQ and the index against dense eigendecompositions."""

import numpy as np
import pytest
import torch

from nnlift.landscape import (
    HessianOperator,
    critical_point_index,
    extreme_ratio,
    hutchinson_trace,
    hutchpp_trace,
    lanczos,
    spectral_density,
    xtrace,
)


@pytest.fixture
def hessian(problem, dense):
    op = HessianOperator(problem.model, problem.loss_fn, (problem.X, problem.y))
    return op, dense.hessian(problem.model, problem.loss_fn, problem.X, problem.y).numpy()


def _symmetric(eigenvalues, seed=0) -> np.ndarray:
    Q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((len(eigenvalues), len(eigenvalues))))
    return (Q * eigenvalues) @ Q.T


@pytest.mark.parametrize("which", ["LA", "SA", "both"])
@pytest.mark.parametrize("k", [3, 13])
def test_lanczos_matches_eigh(hessian, which, k):
    op, H = hessian
    exact = np.linalg.eigvalsh(H)[::-1]
    expected = {"LA": exact[:k], "SA": exact[-k:], "both": np.unique(np.r_[exact[:k], exact[-k:]])[::-1]}[which]
    result = lanczos(op, k, which, tol=0, random_state=0)
    np.testing.assert_allclose(result.values, expected, rtol=0, atol=1e-8)
    np.testing.assert_allclose(H @ result.vectors, result.vectors * result.values, rtol=0, atol=1e-8)
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=0), 1, atol=1e-10)
    assert result.n_matvec >= 1


class _Wrapped:
    """Any object with shape, dtype, device and `@` on torch blocks is an operator."""

    def __init__(self, matrix):
        self.matrix = torch.from_numpy(matrix)
        self.shape, self.dtype, self.device = self.matrix.shape, self.matrix.dtype, self.matrix.device

    def __matmul__(self, V):
        return self.matrix @ V


def test_lanczos_on_other_operators_and_extreme_ratio(hessian):
    op, H = hessian
    exact = np.linalg.eigvalsh(H)
    np.testing.assert_allclose(lanczos(H, 2, "SA", random_state=1).values, exact[:2][::-1], atol=1e-8)
    np.testing.assert_allclose(lanczos(_Wrapped(H), 2, "LA", random_state=1).values, exact[-2:][::-1], atol=1e-8)
    assert extreme_ratio(op, random_state=0) == pytest.approx(abs(exact[0] / exact[-1]), rel=1e-8)


def test_hutchinson_and_hutchpp_are_within_a_few_standard_errors(hessian):
    op, H = hessian
    for estimate in (hutchinson_trace(op, 200, random_state=0), hutchpp_trace(op, 30, random_state=0)):
        assert abs(estimate.estimate - np.trace(H)) < 4 * estimate.std_error + 1e-10
    assert hutchinson_trace(op, 200, random_state=0).n_matvec == 200


def test_hutchpp_beats_hutchinson_on_low_rank_plus_noise():
    """Meyer et al. 2021: with a few dominant eigenvalues, deflating them leaves little variance."""
    rng = np.random.default_rng(0)
    A = _symmetric(np.r_[rng.uniform(50, 100, 10), rng.uniform(0, 1, 290)])
    errors = np.array([[abs(hutchinson_trace(A, 60, random_state=seed).estimate - np.trace(A)),
                        abs(hutchpp_trace(A, 60, random_state=seed).estimate - np.trace(A))] for seed in range(10)])
    assert errors[:, 1].mean() < errors[:, 0].mean() / 10


def test_spectral_density_integrates_to_one_and_has_the_trace_as_mean(hessian):
    op, H = hessian
    result = spectral_density(op, n_iter=20, n_probes=8, random_state=0)
    mass = np.trapezoid(result.density, result.grid)
    mean = np.trapezoid(result.grid * result.density, result.grid)
    hutchinson = hutchinson_trace(op, 8, batch_size=8, random_state=0)
    assert mass == pytest.approx(1, abs=1e-6)
    np.testing.assert_allclose(result.weights.sum(axis=1), 1, atol=1e-12)
    assert (result.weights * result.nodes).sum(axis=1).mean() == pytest.approx(hutchinson.estimate / 26, rel=1e-12)
    assert mean == pytest.approx(hutchinson.estimate / 26, rel=1e-5)
    assert abs(mean - np.trace(H) / 26) < 4 * hutchinson.std_error / 26


def test_slq_survives_breakdown_on_repeated_eigenvalues():
    """Three distinct eigenvalues: the Krylov space is invariant after 3 steps; the rest must get zero weight."""
    A = _symmetric(np.repeat([-1.0, 0.5, 2.0], 10))
    result = spectral_density(A, n_iter=12, n_probes=4, random_state=0)
    np.testing.assert_allclose(result.weights.sum(axis=1), 1, atol=1e-12)
    heavy = result.nodes[result.weights > 1e-12]
    np.testing.assert_allclose(np.min(np.abs(heavy[:, None] - [-1.0, 0.5, 2.0]), axis=1), 0, atol=1e-10)


def test_index_dense_and_slq():
    eigenvalues = np.r_[np.linspace(-2, -0.5, 150), np.linspace(0.5, 3, 350)]
    A = _symmetric(eigenvalues)
    exact = critical_point_index(A)
    assert (exact.method, exact.n_negative, exact.index, exact.std_error) == ("dense", 150, 0.3, 0.0)
    estimate = critical_point_index(A, dense_max=100, n_iter=40, n_probes=16, random_state=0)
    assert estimate.method == "slq" and estimate.n_params == 500
    assert abs(estimate.index - 0.3) < 4 * estimate.std_error


def test_index_ignores_numerically_zero_eigenvalues():
    A = _symmetric(np.r_[np.zeros(5), 1e-17 * np.ones(3), np.ones(4)])
    assert critical_point_index(torch.from_numpy(A)).n_negative == 0


def test_progress_bars_run(hessian):
    op, H = hessian
    assert spectral_density(op, n_iter=5, n_probes=2, verbose=1).nodes.shape == (2, 5)
    assert hutchinson_trace(op, 4, batch_size=2, verbose=1).n_matvec == 4
    np.testing.assert_allclose(critical_point_index(op, verbose=1).index, np.mean(np.linalg.eigvalsh(H) < -1e-6))


def test_bad_arguments_are_refused(hessian):
    op, _ = hessian
    with pytest.raises(ValueError, match="which"):
        lanczos(op, 1, "LM")
    with pytest.raises(ValueError, match="k must be"):
        lanczos(op, 0)
    with pytest.raises(ValueError, match="square"):
        lanczos(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="op contains NaN"):
        xtrace(np.full((4, 4), np.nan), 4)
    with pytest.raises(ValueError, match="v is complex"):
        op @ (np.ones(op.shape[0]) + 1j)
    with pytest.raises(TypeError, match="CurvatureOperator"):
        hutchinson_trace([[1.0]])
    with pytest.raises(ValueError, match="at least 6"):
        hutchpp_trace(op, 5)
    with pytest.raises(ValueError, match="sigma"):
        spectral_density(op, sigma=0.0)
