"""Convex references: closed forms and optimality conditions."""

import numpy as np
import pytest

from nnlift.bias import InaccurateSolveError, max_margin, min_nuclear_norm, nuclear_norm_denoise


def _soudry_data():
    X = np.array([[0.5, 1.5], [1.5, 0.5], [-0.5, -1.5], [-1.5, -0.5]])
    return X, np.array([1.0, 1.0, -1.0, -1.0])


def test_l2_max_margin_of_the_soudry_example_is_the_diagonal():
    ref = max_margin(*_soudry_data())
    np.testing.assert_allclose(ref.direction, [1 / np.sqrt(2), 1 / np.sqrt(2)], atol=1e-6)
    np.testing.assert_allclose(ref.w, [0.5, 0.5], atol=1e-6)   # y <w, x> = 1 on all four support vectors
    assert ref.margin == pytest.approx(np.sqrt(2), rel=1e-6)


def test_lp_max_margins_satisfy_kkt_and_differ():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 5))
    w_true = np.array([1.0, -2.0, 0.0, 0.5, 0.0])
    y = np.sign(X @ w_true)
    refs = {p: max_margin(X, y, p) for p in (1, 2, np.inf, 1.5)}
    for p, ref in refs.items():
        margins = y * (X @ ref.w)
        assert margins.min() == pytest.approx(1.0, abs=1e-6)
        assert np.linalg.norm(ref.direction, ord=p) == pytest.approx(1.0)
    for p, ref in refs.items():  # each is feasible for the others' problems, so it must have the smallest p-norm
        for other in refs.values():
            assert np.linalg.norm(ref.w, ord=p) <= np.linalg.norm(other.w, ord=p) * (1 + 1e-6)


def test_non_separable_data_raise():
    X = np.array([[1.0, 0.0], [1.0, 0.0]])
    with pytest.raises(InaccurateSolveError, match="infeasible"):
        max_margin(X, np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="-1 or \\+1"):
        max_margin(X, np.array([1.0, 0.0]))


def test_nuclear_norm_completion_and_denoising_closed_forms():
    rng = np.random.default_rng(1)
    u, v = rng.standard_normal(6), rng.standard_normal(6)
    truth = np.outer(u, v)
    mask = rng.random((6, 6)) < 0.7
    A = np.stack([np.eye(36)[i].reshape(6, 6) for i in np.flatnonzero(mask)])
    W = min_nuclear_norm(A, truth[mask])
    np.testing.assert_allclose(W[mask], truth[mask], atol=1e-6)   # feasible, and no larger than the truth's norm
    assert np.linalg.norm(W, "nuc") <= np.linalg.norm(truth, "nuc") + 1e-6
    dense = np.ones((6, 6), dtype=bool)
    dense[[0, 1, 2, 3], [1, 2, 3, 4]] = False                     # 4 missing entries of a rank-one matrix
    A = np.stack([np.eye(36)[i].reshape(6, 6) for i in np.flatnonzero(dense)])
    np.testing.assert_allclose(min_nuclear_norm(A, truth[dense]), truth, atol=1e-5)
    Y = rng.standard_normal((5, 4))
    W, value = nuclear_norm_denoise(Y, 0.8)
    U, s, Vt = np.linalg.svd(Y, full_matrices=False)
    shrunk = np.maximum(s - 0.8, 0)
    np.testing.assert_allclose(W, (U * shrunk) @ Vt, atol=1e-5)
    assert value == pytest.approx(0.5 * np.sum((s - shrunk) ** 2) + 0.8 * shrunk.sum(), rel=1e-6)


def test_psd_minimum_trace_completion():
    rng = np.random.default_rng(2)
    u = rng.standard_normal(4)
    truth = np.outer(u, u)
    observed = [(i, j) for i in range(4) for j in range(4) if (i + j) % 3 != 2]
    A = np.zeros((len(observed), 4, 4))
    for m, (i, j) in enumerate(observed):
        A[m, i, j] = 1.0
    W = min_nuclear_norm(A, np.array([truth[i, j] for i, j in observed]), psd=True)
    assert np.linalg.eigvalsh(W).min() > -1e-6
    assert np.trace(W) <= np.trace(truth) + 1e-5
