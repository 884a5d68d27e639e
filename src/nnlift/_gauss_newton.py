"""Gauss-Newton training of a two-layer network for the squared error (`train_two_layer(optimizer="gauss_newton")`).

The objective of `nnlift._training`, F = mean_i w_i mean_o (f(x_i)_o - y_io)^2 + alpha / 2 (||W||^2 + ||c||^2), is
1/2 ||rho||^2 for the residuals rho = [sqrt(2 w_i / (n q)) (f(x_i)_o - y_io); sqrt(alpha) (W, c)], and scipy's
`least_squares` minimises it by its trust-region reflective method (Branch, Coleman & Li 1999), a
Levenberg-Marquardt-type trust region on the Gauss-Newton model J^T J of the curvature.

Why: at low noise the squared error near a good network is a valley whose curvature spans many orders (a softplus
unit queried far outside its bend pins its slope well and its bend poorly), and L-BFGS's line search stalls in it.
On `identify` of softplus d = 10 at s = 4 from 870 queries it stopped at a loss of 6.3e-5 against the optimum's
5.1e-5, with 10x the optimum's excess error; Gauss-Newton reaches the optimum in 12 evaluations.

The residuals' Jacobian is written out (scipy needs it as an array or a LinearOperator): its rows for W are
x_i (x) sigma'(u_i) c_o in closed form, where torch's autograd would build it one row or column at a time. Up to
`DENSE_JACOBIAN_ENTRIES` entries it is a dense array, solved exactly (SVD); beyond, a LinearOperator of two matrix
products per application, solved by LSMR.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares
from scipy.sparse.linalg import LinearOperator

from .activations import Activation

__all__ = ["DENSE_JACOBIAN_ENTRIES", "gauss_newton"]

DENSE_JACOBIAN_ENTRIES = 2**25  # 256 MiB of float64


class _Residuals:
    """rho(theta) and its Jacobian for the free entries of theta = (vec W, b, vec c, c0), the others held fixed.
    Penalty rows are kept for the free penalised entries only; the frozen ones add the constant `frozen_penalty`."""

    def __init__(self, X, Y, weight, init_vector, shapes, free, alpha, act: Activation):
        self.X, self.Y, self.act = X, Y, act
        n, q = Y.shape
        self.scale = np.sqrt(2.0 * (np.ones(n) if weight is None else weight) / (n * q))[:, None]
        self.theta, self.shapes, self.free = init_vector.copy(), shapes, free
        self.blocks = np.split(np.arange(free.size), np.cumsum([int(np.prod(shape)) for shape in shapes])[:-1])
        penalised = np.zeros_like(free)
        if alpha > 0:
            penalised[self.blocks[0]] = penalised[self.blocks[2]] = True
        self.penalised = np.flatnonzero(penalised & free)
        self.frozen_penalty = 0.5 * alpha * float(np.sum(init_vector[penalised & ~free] ** 2))
        self.root_alpha = np.sqrt(alpha)
        self.free_index = np.flatnonzero(free)
        # the dense Jacobian's largest allocation: the data rows of every parameter with a free entry
        touched = sum(block.size for block in self.blocks if free[block].any())
        self.dense = Y.size * touched + len(self.penalised) * len(self.free_index) <= DENSE_JACOBIAN_ENTRIES

    def unpack(self, v: np.ndarray) -> list[np.ndarray]:
        """(W, b, c, c0) at the free entries v, as copies (indexed by arrays): the Jacobian keeps them while scipy
        tries other points."""
        self.theta[self.free_index] = v
        return [self.theta[block].reshape(shape) for block, shape in zip(self.blocks, self.shapes, strict=True)]

    def __call__(self, v: np.ndarray) -> np.ndarray:
        W, b, C, c0 = self.unpack(v)
        data = self.scale * (self.act.numpy(self.X @ W + b) @ C + c0 - self.Y)
        return np.concatenate([data.ravel(), self.root_alpha * self.theta[self.penalised]])

    def jacobian(self, v: np.ndarray):
        W, b, C, _ = self.unpack(v)
        U = self.X @ W + b
        H, G = self.act.numpy(U), self.act.numpy_grad(U)
        if self.dense:
            return self._dense(H, G, C)
        return self._operator(H, G, C, (self.Y.size + len(self.penalised), len(self.free_index)))

    def _dense(self, H, G, C) -> np.ndarray:
        """The data rows block by block, each parameter's free columns only, then the penalty rows."""
        (n, d), k, q = self.X.shape, H.shape[1], C.shape[1]
        slope = self.scale[:, :, None] * G[:, None, :] * C.T[None, :, :]  # (n, q, k): s_i sigma'(u_ij) c_jo
        eye = np.eye(q)
        blocks = (lambda: (self.X[:, None, :, None] * slope[:, :, None, :]).reshape(n, q, d * k),
                  lambda: slope,
                  lambda: ((self.scale * H)[:, None, :, None] * eye[None, :, None, :]).reshape(n, q, k * q),
                  lambda: np.broadcast_to(self.scale[:, :, None] * eye[None, :, :], (n, q, q)))
        columns = [build().reshape(n * q, -1)[:, self.free[block]]
                   for build, block in zip(blocks, self.blocks, strict=True) if self.free[block].any()]
        penalty = np.zeros((len(self.penalised), len(self.free_index)))
        penalty[np.arange(len(self.penalised)), np.searchsorted(self.free_index, self.penalised)] = self.root_alpha
        return np.vstack([np.hstack(columns), penalty])

    def _operator(self, H, G, C, shape) -> LinearOperator:
        """J as two matrix products per application, for the LSMR trust-region solver."""
        (n, d), k, q = self.X.shape, H.shape[1], C.shape[1]
        splits = np.cumsum([d * k, k, k * q])

        def matvec(v):
            full = np.zeros(self.theta.size)
            full[self.free_index] = np.ravel(v)
            dW, db, dC, dc0 = np.split(full, splits)
            hidden = G * (self.X @ dW.reshape(d, k) + db)
            data = self.scale * (hidden @ C + H @ dC.reshape(k, q) + dc0)
            return np.concatenate([data.ravel(), self.root_alpha * full[self.penalised]])

        def rmatvec(u):
            u = np.ravel(u)
            data = self.scale * u[:n * q].reshape(n, q)
            M = G * (data @ C.T)
            full = np.concatenate([(self.X.T @ M).ravel(), M.sum(axis=0), (H.T @ data).ravel(), data.sum(axis=0)])
            full[self.penalised] += self.root_alpha * u[n * q:]
            return full[self.free_index]

        return LinearOperator(shape, matvec=matvec, rmatvec=rmatvec, dtype=np.float64)


def gauss_newton(X: np.ndarray, Y: np.ndarray, weight: np.ndarray | None, params, free_masks, alpha: float,
                 act: Activation, max_iter: int, tol: float, report) -> tuple[list[np.ndarray], float, list, bool]:
    """Minimise F (module docstring) from `params` (W, b, c, c0 as arrays; c (k, q), c0 (q,)) over the entries
    where `free_masks` (one boolean array per parameter) is True, with at most `max_iter` evaluations of F after the
    start's. It converges when one of scipy's tests passes: F falls by less than `tol` F in a step (ftol), the step is
    shorter than `tol` ||theta|| (xtol), or max |dF/dtheta| <= `tol` (gtol; tol at least machine epsilon). `report(F)`
    is called after each step taken. Returns the parameters, F at the start, F after each step and whether it
    converged.
    """
    shapes = [np.shape(p) for p in params]
    vector = np.concatenate([np.ravel(p) for p in params])
    free = np.concatenate([np.ravel(m) for m in free_masks])
    residuals = _Residuals(X, Y, weight, vector, shapes, free, alpha, act)
    initial = 0.5 * float(np.sum(residuals(vector[free]) ** 2)) + residuals.frozen_penalty
    if not np.isfinite(initial):
        raise FloatingPointError(f"the training objective is {initial} at the start; rescale the inputs")
    if not free.any() or max_iter == 0:
        return residuals.unpack(vector[free]), initial, [], not free.any()
    losses: list[float] = []

    def record(intermediate_result) -> None:
        loss = float(intermediate_result.cost) + residuals.frozen_penalty
        if loss < (losses[-1] if losses else initial):  # scipy also reports iterations that rejected every step
            losses.append(loss)
            report(loss)

    tol = max(tol, float(np.finfo(np.float64).eps))
    solution = least_squares(residuals, vector[free], jac=residuals.jacobian, method="trf", ftol=tol, xtol=tol,
                             gtol=tol, max_nfev=max_iter + 1, tr_solver="exact" if residuals.dense else "lsmr",
                             callback=record)
    return residuals.unpack(solution.x), initial, losses, bool(solution.status > 0)
