"""Local descent on ½||Y - Φ(X, W)||²_F + λ Θ(W) at a fixed size r: L-BFGS (scipy) on torch float64 gradients.

The matched regulariser is minimised through its smooth surrogate (1/p) Σ_l ||W_{l,i}||^p (same minima, see
`regularizers`), and the result is balanced so that the surrogate and Π_l ||W_{l,i}|| agree. This is the
"local descent" step of Haeffele & Vidal's meta-algorithm (2017 CVPR); any descent method would do.

ReLU objectives have kinks where a data point sits on a unit's boundary x_jᵀu_i = 0, and that is where optimal
units tend to sit (their knots land on data points), so L-BFGS stalls near them (line-search failure). For
one-hidden-layer ReLU networks `local_descent` then polishes with fixed activation patterns D_i: SLSQP on
½||Y - Σ_i D_i X u_i v_iᵀ||² + λ/2 (||U||² + ||V||²) subject to (2 D_i - I) X u_i >= 0, on which set it equals
the true objective, then flips the patterns of the points left on a boundary and re-solves while that lowers it.
Still a local method: it only moves between neighbouring activation regions. Finally (matched regulariser) the
subnetworks' scales are refitted jointly, a convex problem, so that every subnetwork satisfies the scaling
condition <Z, φ_i> = θ_i that the certificate checks, even where L-BFGS stalled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize

from .networks import ParallelNetwork, as_targets, as_tensor
from .regularizers import objective, penalty_terms, squared_loss

__all__ = ["Descent", "local_descent", "perturbation_test"]


@dataclass(frozen=True)
class Descent:
    """The network reached, its objective, the iterations used (L-BFGS, plus SLSQP when polished) and L-BFGS's
    final gradient max-norm."""

    network: ParallelNetwork
    objective: float
    n_iter: int
    grad_max: float


def local_descent(net: ParallelNetwork, X, Y, lam: float, penalty: str = "matched", max_iter: int = 5000,
                  gtol: float = 1e-10, polish: bool = True) -> Descent:
    """L-BFGS from `net` until the gradient's max-norm is below `gtol` (or `max_iter` iterations); for
    one-hidden-layer ReLU networks then the fixed-pattern polish (`polish=False` skips it)."""
    X, Y = as_tensor(X), as_targets(Y)
    shapes = [W.shape for W in net.layers]
    sizes = [int(np.prod(s)) for s in shapes]

    def unpack(flat: torch.Tensor) -> list[torch.Tensor]:
        return [part.reshape(s) for part, s in zip(torch.split(flat, sizes), shapes, strict=True)]

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        flat = torch.from_numpy(x).requires_grad_(True)
        layers = unpack(flat)
        value = squared_loss(net, X, Y, layers) + lam * penalty_terms(net, penalty, smooth=True, layers=layers).sum()
        (grad,) = torch.autograd.grad(value, flat)
        return float(value.detach()), grad.numpy()

    x0 = torch.cat([W.reshape(-1) for W in net.layers]).numpy()
    if x0.size == 0:
        return Descent(net, objective(net, X, Y, lam, penalty), 0, 0.0)
    result = minimize(fun, x0, jac=True, method="L-BFGS-B",
                      options={"maxiter": max_iter, "gtol": gtol, "ftol": 1e-16, "maxcor": 20})
    reached = ParallelNetwork(unpack(torch.from_numpy(result.x)), net.activation)
    n_iter = int(result.nit)
    if polish and X is not None and net.activation == "relu" and net.widths[1:-1] == [1]:
        U, V, extra = _pattern_polish(*reached.factors(), X.numpy(), Y.numpy(), lam)
        reached, n_iter = ParallelNetwork.one_hidden_relu(U, V), n_iter + extra
    if penalty == "matched":
        reached = _refit_scales(reached.balanced(), X, Y, lam)
    return Descent(reached, objective(reached, X, Y, lam, penalty), n_iter, float(np.abs(result.jac).max()))


def _refit_scales(net: ParallelNetwork, X, Y: torch.Tensor, lam: float) -> ParallelNetwork:
    """Rescale subnetwork i by s_i^{1/p}, s = argmin_{s >= 0} ½||Y - Σ_i s_i φ_i||² + λ Σ_i s_i θ_i (a convex QP):
    this enforces stationarity along every W_i -> αW_i, i.e. <Z, φ_i> = θ_i, even where descent stalled at a kink."""
    if net.r == 0:
        return net
    A = net.subnetwork_outputs(X).reshape(net.r, -1).T.numpy()          # columns vec(φ_i)
    b, theta = Y.reshape(-1).numpy(), net.theta().numpy()
    gram, linear = A.T @ A, A.T @ b - lam * theta
    result = minimize(lambda s: (0.5 * s @ gram @ s - linear @ s, gram @ s - linear), np.ones(net.r), jac=True,
                      method="L-BFGS-B", bounds=[(0, None)] * net.r, options={"gtol": 1e-14, "ftol": 1e-16})
    factors = torch.from_numpy(result.x ** (1 / net.degree))
    return ParallelNetwork([W * factors[:, None, None] for W in net.layers], net.activation)


def _pattern_polish(U: np.ndarray, V: np.ndarray, X: np.ndarray, Y: np.ndarray, lam: float,
                    max_rounds: int = 10) -> tuple[np.ndarray, np.ndarray, int]:
    """SLSQP with the activation patterns fixed by linear constraints, then boundary flips (see module doc)."""
    d, r = U.shape
    n = X.shape[0]

    def fun(z: np.ndarray, D: np.ndarray) -> tuple[float, np.ndarray]:
        U, V = z[:d * r].reshape(d, r), z[d * r:].reshape(-1, r)
        P = D * (X @ U)
        R = P @ V.T - Y
        value = 0.5 * np.sum(R ** 2) + 0.5 * lam * (np.sum(U ** 2) + np.sum(V ** 2))
        return value, np.concatenate([(X.T @ (D * (R @ V)) + lam * U).ravel(), (R.T @ P + lam * V).ravel()])

    z = np.concatenate([U.ravel(), V.ravel()])
    iterations = 0
    for round_ in range(max_rounds):
        XU = X @ z[:d * r].reshape(d, r)
        D = (XU > 0).astype(np.float64)
        if round_ > 0:
            boundary = np.abs(XU) <= 1e-9 * np.linalg.norm(X, axis=1)[:, None] * np.abs(XU).max(0).clip(1e-300)
            if not boundary.any():
                break
            D = np.where(boundary, 1.0 - D, D)
        if round_ == 0:
            best = fun(z, D)[0]
        A = np.zeros((n * r, z.size))
        for i in range(r):                                   # rows of unit i: (2 D_ji - 1) x_jᵀ u_i >= 0
            A[i * n:(i + 1) * n, i:d * r:r] = (2 * D[:, i:i + 1] - 1) * X
        result = minimize(fun, z, args=(D,), jac=True, method="SLSQP", options={"maxiter": 1000, "ftol": 1e-15},
                          constraints=[{"type": "ineq", "fun": lambda z, A=A: A @ z, "jac": lambda z, A=A: A}])
        iterations += int(result.nit)
        value = fun(result.x, D)[0]
        if not (np.all(A @ result.x >= -1e-10 * np.abs(result.x).max()) and value < best - 1e-15 * abs(best)):
            break
        best, z = value, result.x
    return z[:d * r].reshape(d, r), z[d * r:].reshape(-1, r), iterations


def perturbation_test(net: ParallelNetwork, X, Y, lam: float, penalty: str = "matched", radius: float = 1e-3,
                      n_directions: int = 200, random_state: int = 0) -> float:
    """min over random directions E (||E|| = radius ||W||, all layers at once) of f(W + E) - f(W), relative to
    f(W): >= 0 is empirical evidence of a local minimum (a negative value disproves one)."""
    generator = torch.Generator().manual_seed(random_state)
    base = objective(net, X, Y, lam, penalty)
    size = float(torch.sqrt(sum(W.pow(2).sum() for W in net.layers)))
    worst = np.inf
    for _ in range(n_directions):
        E = [torch.randn(W.shape, generator=generator, dtype=torch.float64) for W in net.layers]
        scale = radius * size / float(torch.sqrt(sum(e.pow(2).sum() for e in E)))
        moved = ParallelNetwork([W + scale * e for W, e in zip(net.layers, E, strict=True)], net.activation)
        worst = min(worst, objective(moved, X, Y, lam, penalty) - base)
    return worst / abs(base)
