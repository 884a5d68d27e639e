"""Convex reference solutions that implicit-bias results converge to, solved by cvxpy with status checks.

- `max_margin(X, y, p)`: argmin ||w||_p s.t. y_i <w, x_i> >= 1, no intercept: the hard-margin SVM for p = 2
  (Soudry et al. 2018), the l1 / l_inf / lp max margin that steepest descent w.r.t. that same norm
  reaches (Gunasekar et al. 2018, Thm. 5). Not `LinearSVC(C=1)` and never with an intercept.
- `min_nuclear_norm(measurements, b, psd)`: argmin ||W||_* s.t. <A_i, W> = b_i (matrix sensing; completion
  when each A_i is an indicator), optionally over W ⪰ 0 (Gunasekar et al. 2017's conjecture for U U^T).
- `nuclear_norm_denoise(Y, lam)`: argmin 1/2 ||Y - W||_F^2 + lam ||W||_* (the convex problem behind a
  factorization with the degree-matched regulariser, Haeffele & Vidal 2017).
A solve that cvxpy reports as anything but optimal raises `InaccurateSolveError`: a reference that is not
accurate is not a reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import cvxpy as cp
import numpy as np

__all__ = ["InaccurateSolveError", "MaxMargin", "max_margin", "min_nuclear_norm", "nuclear_norm_denoise"]


class InaccurateSolveError(RuntimeError):
    """cvxpy did not report an optimal solution (infeasible, unbounded or inaccurate)."""


@dataclass(frozen=True)
class MaxMargin:
    """The max-margin predictor: `w` (min norm with margins >= 1), `direction` = w / ||w||_p, `margin` = 1/||w||_p."""

    w: np.ndarray
    direction: np.ndarray
    margin: float
    p: float


def _solve(problem: cp.Problem, what: str, solver: str | None) -> None:
    problem.solve(solver=solver)
    if problem.status != cp.OPTIMAL:
        raise InaccurateSolveError(f"{what}: cvxpy status {problem.status!r} (not 'optimal'); the reference "
                                   "cannot be trusted. Check that the data are separable/feasible, rescale "
                                   "them, or pass another solver.")


def _check_labels(X, y) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X must be (n, d) and y (n,), got {X.shape} and {y.shape}")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise ValueError("X and y must be finite")
    if not np.all(np.isin(y, (-1.0, 1.0))):
        raise ValueError("labels must be -1 or +1")
    return X, y


def max_margin(X, y, p: float = 2, solver: str | None = None) -> MaxMargin:
    """argmin ||w||_p s.t. y_i <w, x_i> >= 1 (no intercept); p = 1, 2, inf or any p >= 1."""
    X, y = _check_labels(X, y)
    if not (p == np.inf or p >= 1):
        raise ValueError(f"p must be >= 1 or inf, got {p}")
    w = cp.Variable(X.shape[1])
    norm = cp.sum_squares(w) if p == 2 else cp.norm(w, p)
    _solve(cp.Problem(cp.Minimize(norm), [cp.multiply(y, X @ w) >= 1]), f"l{p} max margin", solver)
    value = np.asarray(w.value, dtype=np.float64)
    size = float(np.linalg.norm(value, ord=p))
    return MaxMargin(value, value / size, 1.0 / size, float(p))


def min_nuclear_norm(measurements, b, psd: bool = False, solver: str | None = None) -> np.ndarray:
    """argmin ||W||_* s.t. <A_i, W> = b_i for the (m, n1, n2) stack of measurement matrices A_i."""
    A = np.asarray(measurements, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if A.ndim != 3 or b.shape != (A.shape[0],):
        raise ValueError(f"measurements must be (m, n1, n2) and b (m,), got {A.shape} and {b.shape}")
    if psd and A.shape[1] != A.shape[2]:
        raise ValueError("psd=True needs square measurement matrices")
    W = cp.Variable(A.shape[1:], PSD=True) if psd else cp.Variable(A.shape[1:])
    constraints = [cp.sum(cp.multiply(A_i, W)) == b_i for A_i, b_i in zip(A, b, strict=True)]
    objective = cp.trace(W) if psd else cp.normNuc(W)
    _solve(cp.Problem(cp.Minimize(objective), constraints), "minimum nuclear norm", solver)
    value = np.asarray(W.value, dtype=np.float64)
    return 0.5 * (value + value.T) if psd else value


def nuclear_norm_denoise(Y, lam: float, solver: str | None = None) -> tuple[np.ndarray, float]:
    """argmin_W 1/2 ||Y - W||_F^2 + lam ||W||_* and its optimal value."""
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim != 2 or lam < 0:
        raise ValueError("Y must be a matrix and lam >= 0")
    W = cp.Variable(Y.shape)
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(Y - W) + lam * cp.normNuc(W)))
    _solve(problem, "nuclear-norm denoising", solver)
    return np.asarray(W.value, dtype=np.float64), float(problem.value)
