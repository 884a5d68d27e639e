"""Hessian-free optimisation (Martens 2010, "Deep learning via Hessian-free optimization"; the line search from
Martens & Sutskever 2012, "Training deep and recurrent networks with Hessian-free optimization", §8.8).

The closure contract is that of `nnlift.optim.newton.SecondOrderOptimizer`: `step(closure)`, `closure()` returns
the step's data, one batch (X, y) or a re-iterable of batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from nnlift.landscape.operators import GaussNewtonOperator, HessianOperator, ParameterSelection

from .newton import SecondOrderOptimizer, backtracking_line_search

__all__ = ["HessianFree", "CGResult", "conjugate_gradient", "cg_backtrack", "martens_should_stop"]

_CURVATURES = {"gauss_newton": GaussNewtonOperator, "hessian": HessianOperator}


def martens_should_stop(phi: Sequence[float], eps: float = 5e-4) -> bool:
    """Martens' (2010, §4.4) CG stopping rule at iteration i = len(phi) − 1, phi[j] = φ(x_j): stop when i > k,
    φ(x_i) < 0 and (φ(x_i) − φ(x_{i−k}))/φ(x_i) < kε, with k = max(10, ⌊0.1 i⌋): the relative decrease of the
    quadratic over the last k iterations has fallen below ε per iteration."""
    i = len(phi) - 1
    k = max(10, int(0.1 * i))
    return i > k and phi[i] < 0 and (phi[i] - phi[i - k]) / phi[i] < k * eps


@dataclass
class CGResult:
    """The last CG iterate `x`; `iterates`, the (i, x_i, φ(x_i)) kept for backtracking at i = ⌈γ^j⌉ and the last i;
    φ(x_0), …, φ(x_n) in `phi`; the number of iterations n, of products with A, and why CG stopped ("progress":
    Martens' rule, "residual": ‖r‖ ≤ tol‖b‖, "curvature": dᵀAd ≤ 0, "max_iter")."""

    x: torch.Tensor
    iterates: list[tuple[int, torch.Tensor, float]]
    phi: list[float]
    n_iter: int
    n_products: int
    reason: str


def conjugate_gradient(matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, x0: torch.Tensor | None = None,
                       *, max_iter: int = 250, eps: float = 5e-4, tol: float = 1e-12,
                       gamma: float = 1.3) -> CGResult:
    """Linear conjugate gradients on φ(x) = ½xᵀAx − bᵀx from x0 (Martens 2010, Algorithm 2, no preconditioner), with
    `martens_should_stop` and the iterates at i = ⌈γ^j⌉ kept for CG backtracking (§4.6). φ costs no product:
    φ(x) = −½xᵀ(b + r) with the residual r = b − Ax."""
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    nonzero_start = bool(x.any())
    r = b - matvec(x) if nonzero_start else b.clone()
    d, rr = r.clone(), float(r @ r)
    phi = [float(-0.5 * x @ (b + r))]
    iterates, save_at, power = [], 1, 0
    n_products, reason, i, b_norm = int(nonzero_start), "max_iter", 0, float(b.norm())
    while i < max_iter:
        if rr <= (tol * b_norm) ** 2:
            reason = "residual"
            break
        Ad = matvec(d)
        n_products += 1
        curvature = float(d @ Ad)
        if not curvature > 0:
            reason = "curvature"
            break
        step = rr / curvature
        x, r, i = x + step * d, r - step * Ad, i + 1
        phi.append(float(-0.5 * x @ (b + r)))
        if i == save_at:
            iterates.append((i, x, phi[-1]))
            while save_at <= i:
                power += 1
                save_at = math.ceil(gamma ** power)
        if martens_should_stop(phi, eps):
            reason = "progress"
            break
        rr_new = float(r @ r)
        d, rr = r + (rr_new / rr) * d, rr_new
    if not iterates or iterates[-1][0] != i:
        iterates.append((i, x, phi[-1]))
    return CGResult(x, iterates, phi, i, n_products, reason)


def cg_backtrack(iterates: Sequence[tuple[int, torch.Tensor, float]],
                 loss_at: Callable[[torch.Tensor], float]) -> tuple[tuple[int, torch.Tensor, float], float]:
    """CG-iteration backtracking (Martens 2010, §4.6): from the last kept iterate go back while the true objective
    `loss_at(x)` keeps falling; the iterate before the first rise and its objective."""
    j = len(iterates) - 1
    best = loss_at(iterates[j][1])
    while j > 0:
        previous = loss_at(iterates[j - 1][1])
        if not previous < best:
            break
        j, best = j - 1, previous
    return iterates[j], best


class HessianFree(SecondOrderOptimizer):
    """Hessian-free optimisation (Martens 2010, Algorithm 1): truncated CG on the damped quadratic model
    q(p) = ∇Lᵀp + ½pᵀ(B + λI)p, B the Gauss-Newton matrix (`curvature="gauss_newton"`, `GaussNewtonOperator`,
    positive semi-definite for losses convex in the output) or the Hessian (`"hessian"`; CG stops at negative
    curvature).

    Per `step`: CG (`conjugate_gradient`, at most `max_cg_iter` products) from the last step's final CG iterate
    times `warm_start_decay` (§4.5), stopped by Martens' rule with ε = `cg_eps` (§4.4); CG backtracking
    (`cg_backtrack`, §4.6) over the iterates kept at i = ⌈γ^j⌉, γ = `backtrack_gamma`, and the last, which gives p;
    Levenberg-Marquardt damping (§4.1) by ρ = (L(θ + p) − L(θ))/(pᵀ∇L + ½pᵀBp), the undamped model's decrease:
    λ ← 3/2·λ if ρ < 1/4 (or the model predicts no decrease), λ ← 2/3·λ if ρ > 3/4; then θ ← θ + tp with t from
    Armijo backtracking from `lr` by factors `shrink` (0.8, c = 10⁻²; Martens & Sutskever 2012, §8.8). The
    curvature is taken on the same data as the gradient (Martens uses a subset), without a preconditioner.

    State: `step`, `damping` (λ for the next step), `warm_start` (the last final CG iterate), `rho`,
    `step_size`, `cg_iterations` (of the last step) and `n_products` (curvature products over all steps).
    """

    def __init__(self, model: torch.nn.Module, loss_fn: Callable, *, lr: float = 1.0, damping: float = 1.0,
                 curvature: str = "gauss_newton", max_cg_iter: int = 250, cg_eps: float = 5e-4,
                 cg_tol: float = 1e-12, warm_start_decay: float = 0.95, backtrack_gamma: float = 1.3,
                 shrink: float = 0.8, c: float = 1e-2, max_backtracks: int = 60,
                 parameters: ParameterSelection = None):
        if curvature not in _CURVATURES:
            raise ValueError(f"curvature must be one of {list(_CURVATURES)}, got {curvature!r}")
        if lr <= 0 or damping < 0 or max_cg_iter < 1 or backtrack_gamma <= 1:
            raise ValueError(f"need lr > 0, damping >= 0, max_cg_iter >= 1 and backtrack_gamma > 1, got lr={lr}, "
                             f"damping={damping}, max_cg_iter={max_cg_iter}, backtrack_gamma={backtrack_gamma}")
        super().__init__(model, loss_fn, dict(lr=lr, damping=damping, curvature=curvature, max_cg_iter=max_cg_iter,
                                              cg_eps=cg_eps, cg_tol=cg_tol, warm_start_decay=warm_start_decay,
                                              backtrack_gamma=backtrack_gamma, shrink=shrink, c=c,
                                              max_backtracks=max_backtracks), parameters)

    def step(self, closure: Callable | None = None) -> float:
        group, state = self.param_groups[0], self.global_state
        op = self._operator(closure, _CURVATURES[group["curvature"]])
        objective = op.objective
        theta, f0, g = objective.point, objective.loss(), objective.gradient()
        lam = state.get("damping", group["damping"])
        start = state.get("warm_start")
        cg = conjugate_gradient(lambda v: op @ v + lam * v, -g,
                                None if start is None else group["warm_start_decay"] * start,
                                max_iter=group["max_cg_iter"], eps=group["cg_eps"], tol=group["cg_tol"],
                                gamma=group["backtrack_gamma"])

        def loss_at(point: torch.Tensor) -> float:  # a non-finite loss (an overflowing trial point) counts as +inf
            value = objective.loss(point)
            return value if math.isfinite(value) else math.inf

        (_, p, phi_p), f_p = cg_backtrack(cg.iterates, lambda x: loss_at(theta + x))
        predicted = phi_p - 0.5 * lam * float(p @ p)
        rho = (f_p - f0) / predicted if predicted < 0 else -math.inf
        if rho < 0.25:
            lam *= 1.5
        elif rho > 0.75:
            lam *= 2 / 3
        t, _ = backtracking_line_search(lambda t: loss_at(theta + t * p), f0, float(g @ p), step=group["lr"],
                                        shrink=group["shrink"], c=group["c"], max_tries=group["max_backtracks"])
        self._write(theta + t * p)
        state.update(step=state.get("step", 0) + 1, damping=lam, warm_start=cg.x, rho=rho, step_size=t,
                     cg_iterations=cg.n_iter, n_products=state.get("n_products", 0) + cg.n_products)
        return f0
