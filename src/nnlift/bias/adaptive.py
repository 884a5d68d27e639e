"""Adaptive gradient methods can overfit where gradient descent does not: Wilson, Roelofs, Stern, Srebro & Recht
(2017), "The marginal value of adaptive gradient methods in machine learning", Section 3.3.

Least squares min_w ||X w - y||^2 on the constructed features (`wilson_features`, their Sec. 3.3):
x_i1 = y_i, x_i2 = x_i3 = 1, and a block of features of its own per point, 1 for y_i = +1 and 5 for y_i = -1,
labels +1 with probability p > 1/2. Gradient methods (GD, SGD, heavy ball) started at 0 stay in the row space of X,
so they reach the minimum-norm solution X^T (X X^T)^-1 y, which classifies new points correctly. Their Lemma 3.1:
when X sign(X^T y) = c y for a scalar c (here c = 4, true whenever more labels are +1 than -1), AdaGrad, RMSProp
and Adam started at 0 converge to w proportional to sign(X^T y), which puts equal weight on the first three
features, so every new point (whose own features were never seen) is classified +1: test error = the fraction of
-1 labels, close to 1/2 for p close to 1/2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import sparse

__all__ = ["METHODS", "WilsonProblem", "fit_least_squares", "lemma_holds", "wilson_features", "wilson_problem"]

# name -> (torch.optim class, its keyword arguments besides lr, minibatch rows or None for the full batch)
METHODS = {
    "gd": (torch.optim.SGD, {}, None),
    "sgd": (torch.optim.SGD, {}, 10),
    "heavy_ball": (torch.optim.SGD, {"momentum": 0.9}, None),
    "adagrad": (torch.optim.Adagrad, {}, None),
    "rmsprop": (torch.optim.RMSprop, {}, None),
    "adam": (torch.optim.Adam, {}, None),
}


@dataclass(frozen=True)
class WilsonProblem:
    """Training rows X (n, d) dense, labels y (n,), test rows X_test (n_test, d_test >= d) sparse, labels y_test.

    The test points' own features lie in columns >= d, which no training point has: a method started at 0 never
    moves those weights (zero gradient, and zero adaptive update), so predictions use X_test[:, :d] @ w."""

    X: np.ndarray
    y: np.ndarray
    X_test: sparse.csr_matrix
    y_test: np.ndarray


def wilson_features(y, first_point: int = 0) -> sparse.csr_matrix:
    """Wilson et al. (2017), Sec. 3.3, with point i numbered i + first_point (1-based j in the paper), sparse:
    x_ij = y_i (j = 1), 1 (j = 2, 3), 1 (j = 4 + 5(i-1), ..., 4 + 5(i-1) + 2(1 - y_i)), 0 otherwise."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1 or not np.all(np.isin(y, (-1.0, 1.0))):
        raise ValueError("y must be a vector of -1 / +1 labels")
    rows, cols, values = [], [], []
    for i, label in enumerate(y):
        start = 3 + 5 * (first_point + i)
        own = list(range(start, start + 1 + int(2 * (1 - label))))
        rows += [i] * (3 + len(own))
        cols += [0, 1, 2] + own
        values += [label, 1.0, 1.0] + [1.0] * len(own)
    return sparse.csr_matrix((values, (rows, cols)), shape=(y.size, 3 + 5 * (first_point + y.size)))


def wilson_problem(n: int, p: float, n_test: int = 1000, random_state=None) -> WilsonProblem:
    """n training and n_test test points, labels +1 with probability p; test points numbered after training ones."""
    if not (n >= 1 and n_test >= 1 and 0 < p < 1):
        raise ValueError("n, n_test >= 1 and 0 < p < 1 are required")
    rng = np.random.default_rng(random_state)
    y = np.where(rng.random(n) < p, 1.0, -1.0)
    y_test = np.where(rng.random(n_test) < p, 1.0, -1.0)
    return WilsonProblem(wilson_features(y).toarray(), y, wilson_features(y_test, first_point=n), y_test)


def lemma_holds(X, y) -> bool:
    """Lemma 3.1's condition on the columns some point uses: X^T y has no zero entry there and
    X sign(X^T y) = c y for a scalar c > 0 (all-zero columns never move from 0 under any of the methods)."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    X = X[:, np.any(X != 0, axis=0)]
    u = X.T @ y
    if np.any(u == 0):
        return False
    v = X @ np.sign(u)
    c = float(v @ y / (y @ y))
    return c > 0 and np.allclose(v, c * y)


def fit_least_squares(X, y, method: str, lr: float, n_steps: int, random_state=None) -> np.ndarray:
    """Minimise ||X w - y||^2 / n from w = 0 with one of `METHODS` (torch.optim, float64); returns w.

    X (n, d) and y (n,), or a batch (S, n, d) and (S, n) of same-shape problems fitted at once (every optimiser
    here updates coordinate by coordinate, so the runs do not interact). The gradient 2 X^T (X w - y) / n is
    computed with a sparse block-diagonal X and handed to the torch optimiser; `sgd` uses minibatches of rows
    drawn per problem without replacement with `random_state`, gradient 2 X_B^T (X_B w - y_B) / |B|.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    single = X.ndim == 2
    if single:
        X, y = X[None], y[None]
    if X.ndim != 3 or y.shape != X.shape[:2]:
        raise ValueError(f"X must be (n, d) or (S, n, d) and y match it, got {X.shape} and {y.shape}")
    optimizer_class, kwargs, batch = METHODS[method]
    S, n, d = X.shape
    blocks = sparse.block_diag([sparse.csr_matrix(block) for block in X], format="csr")
    blocks_t = blocks.T.tocsr()
    targets = y.ravel()
    rng = np.random.default_rng(random_state)
    w = torch.zeros(S * d, dtype=torch.float64, requires_grad=True)
    weights = w.detach().numpy()  # shares memory with w, which the optimiser updates in place
    optimizer = optimizer_class([w], lr=lr, **kwargs)
    for _ in range(n_steps):
        residual = blocks @ weights - targets
        if batch is not None and batch < n:
            chosen = np.zeros((S, n))
            rows = np.argpartition(rng.random((S, n)), batch, axis=1)[:, :batch]
            np.put_along_axis(chosen, rows, n / batch, axis=1)
            residual *= chosen.ravel()
        w.grad = torch.from_numpy((2.0 / n) * (blocks_t @ residual))
        optimizer.step()
    out = weights.reshape(S, d).copy()
    return out[0] if single else out
