"""Exact references for one-hidden-layer ReLU networks on 2-D inputs (e.g. 1-D data with a bias column [x, 1]).

In 2-D the activation patterns D(u) = diag(1[X u > 0]) of the unit circle are constant on at most 2n arcs
between the angles where some x_jᵀu = 0, so both hard problems become exact:

- the polar sup_{||u||, ||v|| <= 1} <Z, relu(X u) vᵀ> = max_u ||Zᵀ D(u) X u||: on each arc a 2x2 quadratic form
  in the angle, maximised in closed form (`relu_polar_exact_2d`);
- the global minimum of ½||y - relu(X U) v||² + λ Σ_i ||u_i|| |v_i| (scalar output): the convex program of
  Pilanci & Ergen 2020 (ICML, "Neural networks are convex regularizers", Thm. 1) over all patterns,
  min ½||Σ_D D X (a_D - b_D) - y||² + λ Σ_D (||a_D|| + ||b_D||) s.t. (2D - I) X a_D >= 0, (2D - I) X b_D >= 0.
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np

from ..bias import InaccurateSolveError
from .networks import ParallelNetwork

__all__ = ["activation_arcs", "relu_convex_optimum", "relu_polar_exact_2d"]


def activation_arcs(X) -> list[tuple[float, float, np.ndarray]]:
    """(start angle, end angle, pattern 1[X u > 0]) for each arc of the circle on which the pattern is constant."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"X must be (n, 2), got {X.shape}")
    rows = X[np.linalg.norm(X, axis=1) > 0]
    angles = np.arctan2(rows[:, 1], rows[:, 0])
    cuts = np.unique(np.mod(np.concatenate([angles + np.pi / 2, angles - np.pi / 2]), 2 * np.pi))
    if cuts.size == 0:
        return [(0.0, 2 * np.pi, np.zeros(X.shape[0], dtype=bool))]
    ends = np.append(cuts[1:], cuts[0] + 2 * np.pi)
    arcs = []
    for start, end in zip(cuts, ends, strict=True):
        mid = 0.5 * (start + end)
        arcs.append((float(start), float(end), X @ np.array([np.cos(mid), np.sin(mid)]) > 0))
    return arcs


def relu_polar_exact_2d(X, Z) -> tuple[float, np.ndarray, np.ndarray]:
    """(value, u*, v*) of max over unit u, v of <Z, relu(X u) vᵀ>, exactly, for 2-D inputs X (n, 2), Z (n, m)."""
    X, Z = np.asarray(X, dtype=np.float64), np.asarray(Z, dtype=np.float64)
    best, best_angle = -1.0, 0.0
    for start, end, pattern in activation_arcs(X):
        M = Z.T @ (X * pattern[:, None])                  # (m, 2): ||M u||² on the arc
        A = M.T @ M
        c1, c2 = 0.5 * (A[0, 0] - A[1, 1]), A[0, 1]
        peak = 0.5 * np.arctan2(c2, c1)                   # the quadratic form peaks at peak + kπ
        k = np.arange(np.ceil((start - peak) / np.pi), np.floor((end - peak) / np.pi) + 1)
        for angle in np.concatenate([[start, end], peak + k * np.pi]):
            u = np.array([np.cos(angle), np.sin(angle)])
            value = float(u @ A @ u)
            if value > best:
                best, best_angle = value, angle
    u = np.array([np.cos(best_angle), np.sin(best_angle)])
    w = Z.T @ np.maximum(X @ u, 0.0)
    norm = np.linalg.norm(w)
    return float(norm), u, (w / norm if norm > 0 else w)


def relu_convex_optimum(X, y, lam: float, solver: str | None = None) -> tuple[float, ParallelNetwork]:
    """The global minimum value and a minimiser (one unit per non-zero a_D, b_D) for scalar outputs y (n,)."""
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64).reshape(-1)
    if y.shape != (X.shape[0],) or lam <= 0:
        raise ValueError("y must have one value per row of X and lam > 0")
    patterns = np.unique(np.array([p for *_, p in activation_arcs(X)]), axis=0).astype(np.float64)
    A = cp.Variable((len(patterns), 2))
    B = cp.Variable((len(patterns), 2))
    fit, constraints = 0, []
    for k, D in enumerate(patterns):
        sign = (2 * D - 1)[:, None] * X
        fit = fit + (D[:, None] * X) @ (A[k] - B[k])
        constraints += [sign @ A[k] >= 0, sign @ B[k] >= 0]
    penalty = cp.sum(cp.norm(A, 2, axis=1)) + cp.sum(cp.norm(B, 2, axis=1))
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(fit - y) + lam * penalty), constraints)
    problem.solve(solver=solver)
    if problem.status != cp.OPTIMAL:
        raise InaccurateSolveError(f"Pilanci-Ergen convex program: cvxpy status {problem.status!r}")
    units, outs = [], []
    for W, sign in ((A.value, 1.0), (B.value, -1.0)):
        for w in W:
            norm = np.linalg.norm(w)
            if norm > 1e-9 * max(1.0, np.abs(W).max()):
                units.append(w / np.sqrt(norm))
                outs.append(sign * np.sqrt(norm))
    U = np.array(units).reshape(-1, 2).T
    return float(problem.value), ParallelNetwork.one_hidden_relu(U, np.array(outs).reshape(1, -1))
