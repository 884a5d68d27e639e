"""The saddle-free Newton method in a Krylov subspace (Dauphin, Pascanu, Gulcehre, Cho, Ganguli & Bengio 2014,
"Identifying and attacking the saddle point problem in high-dimensional non-convex optimization", Algorithm 1).

The closure contract is that of `nnlift.optim.newton.SecondOrderOptimizer`: `step(closure)`, `closure()` returns
the step's data, one batch (X, y) or a re-iterable of batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from nnlift.landscape.operators import HessianOperator, ParameterSelection

from .newton import SecondOrderOptimizer, backtracking_line_search, spectral_solve

__all__ = ["SaddleFreeNewton", "lanczos_basis"]


def _orthogonalize(w: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    for _ in range(2):  # classical Gram-Schmidt, twice ("twice is enough")
        w = w - basis @ (basis.T @ w)
    return w


def lanczos_basis(op, start: torch.Tensor, k: int, *,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """An orthonormal basis V (P, k) of the Krylov subspace span{s, Hs, …, H^{k−1}s}, s = `start`, and the projected
    Ĥ = VᵀHV (k, k), from k products `op @ v` (Lanczos with full reorthogonalisation; Ĥ is formed from the products
    themselves, not from the three-term recurrence, so it stays exact when orthogonality would drift).

    Where the Krylov space is invariant before k vectors (breakdown), or s = 0, the basis goes on from a Gaussian
    vector (`generator`) orthogonal to it, so V has min(k, P) columns and, for k = P, V Ĥ Vᵀ = H.
    `spectrum.lanczos` is not used: it returns ARPACK's Ritz pairs, not the Krylov basis of a given start.
    """
    P = start.shape[0]
    k = min(k, P)
    V, HV = start.new_zeros((P, k)), start.new_zeros((P, k))
    threshold = math.sqrt(torch.finfo(start.dtype).eps)
    w, scale = start, 0.0
    for j in range(k):
        norm = float(w.norm())
        if norm <= threshold * scale:
            w = _orthogonalize(torch.randn(P, generator=generator, dtype=start.dtype).to(start.device), V[:, :j])
            norm = float(w.norm())
        V[:, j] = w / norm
        HV[:, j] = op @ V[:, j]
        scale = max(scale, float(HV[:, j].norm()))
        w = _orthogonalize(HV[:, j], V[:, :j + 1])
    projected = V.T @ HV
    return V, (projected + projected.T) / 2


class SaddleFreeNewton(SecondOrderOptimizer):
    """Saddle-free Newton (Dauphin et al. 2014, Algorithm 1): Newton's step with the Hessian's eigenvalues replaced by
    their absolute values, in a k-dimensional Krylov subspace.

    Per `step`: V = `lanczos_basis` of the exact Hessian (`HessianOperator`) from the gradient, Ĥ = VᵀHV,
    |Ĥ| = U|Λ|Uᵀ from Ĥ's eigendecomposition; then `subspace_steps` (the paper's m) times, in the subspace
    f̂(α) = L(θ + Vα) with ĝ = Vᵀ∇L(θ + Vα): for every λ in `damping` the step Δα_λ = −(|Ĥ| + λI)⁻¹ĝ, λ the one
    with the lowest f̂(α + Δα_λ) (the paper's λ ← argmin_λ f̂), and α ← α + tΔα_λ with t from an Armijo backtracking
    line search from `lr`. So the step is θ ← θ − tV(|Ĥ| + λI)⁻¹Vᵀ∇L: along negative curvature it descends where
    Newton's step would climb, which repels it from saddles. Zero eigenvalues of |Ĥ| + λI (λ = 0) are left alone.

    `random_state` seeds the vectors that continue the basis after a Lanczos breakdown (seeded with the step count,
    so the sequence survives `state_dict`). State: `step`, `damping` (the λ chosen last), `step_size` (the last t),
    `min_eigenvalue` (of Ĥ at the last step's start).
    """

    def __init__(self, model: torch.nn.Module, loss_fn: Callable, *, lr: float = 1.0, k: int = 20,
                 damping: Sequence[float] = (1e-3, 1e-2, 1e-1, 1.0, 10.0), subspace_steps: int = 1,
                 shrink: float = 0.5, c: float = 1e-4, max_backtracks: int = 30, random_state: int = 0,
                 parameters: ParameterSelection = None):
        damping = tuple(float(value) for value in damping)
        if lr <= 0 or k < 1 or subspace_steps < 1 or not damping or min(damping) < 0:
            raise ValueError(f"need lr > 0, k >= 1, subspace_steps >= 1 and a non-empty damping set of values >= 0, "
                             f"got lr={lr}, k={k}, subspace_steps={subspace_steps}, damping={damping}")
        super().__init__(model, loss_fn, dict(lr=lr, k=k, damping=damping, subspace_steps=subspace_steps,
                                              shrink=shrink, c=c, max_backtracks=max_backtracks,
                                              random_state=random_state), parameters)

    def step(self, closure: Callable | None = None) -> float:
        group, state = self.param_groups[0], self.global_state
        op = self._operator(closure, HessianOperator)
        objective = op.objective
        theta, f0, g = objective.point, objective.loss(), objective.gradient()
        count = state.get("step", 0)
        seed = int(np.random.SeedSequence([group["random_state"], count]).generate_state(1)[0])
        generator = torch.Generator().manual_seed(seed)
        V, projected = lanczos_basis(op, g, group["k"], generator=generator)
        values, vectors = torch.linalg.eigh(projected)
        alpha, f_alpha, lam, t = torch.zeros_like(values), f0, group["damping"][0], 0.0
        for j in range(group["subspace_steps"]):
            g_hat = V.T @ (g if j == 0 else objective.gradient(theta + V @ alpha))
            steps = torch.stack([-spectral_solve(values.abs(), vectors, g_hat, lam) for lam in group["damping"]])
            trial = objective.losses(alpha + steps, V.T)
            best = int(np.argmin(np.where(np.isfinite(trial), trial, np.inf)))
            lam, delta = group["damping"][best], steps[best]
            point, direction = theta + V @ alpha, V @ delta
            t, f_alpha = backtracking_line_search(lambda t, x=point, d=direction: objective.loss(x + t * d), f_alpha,
                                                  float(g_hat @ delta), step=group["lr"], shrink=group["shrink"],
                                                  c=group["c"], max_tries=group["max_backtracks"])
            if t == 0:
                break
            alpha = alpha + t * delta
        self._write(theta + V @ alpha)
        state.update(step=count + 1, damping=lam, step_size=t, min_eigenvalue=float(values[0]))
        return f0
