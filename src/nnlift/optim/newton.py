"""Damped Newton's method on the dense Hessian (small problems), and the base of nnlift's second-order optimizers.

Closure contract of `SecondOrderOptimizer` (`Newton`, `SaddleFreeNewton`, `HessianFree`): the optimizer is made
on the model and the loss, `Opt(model, loss_fn, ...)`, and `step(closure)` calls `closure()` once; it returns the
data of the step, one batch `(X, y)` or a re-iterable of batches (a list, a DataLoader). The objective is then
L(θ) = (1/N) Σ_b n_b · loss_fn(model(X_b; θ), y_b) (`nnlift.landscape.FunctionalLoss`; `loss_fn` averages over a
batch), θ the selected parameters as one flat vector. The optimizer evaluates L, ∇L and curvature products
(`nnlift.landscape` operators, `torch.func`) at θ and at trial points itself, without `.grad` and without calling
the closure again, writes the new θ into the parameters and returns L before the step (a float). A closure of
torch's usual kind, one that returns the loss, cannot serve: Gauss-Newton and Hessian products need the model as a
function of θ, and the Gauss-Newton matrix needs the outputs and the loss apart.

    opt = HessianFree(model, torch.nn.functional.mse_loss)
    for X, y in loader:
        loss = opt.step(lambda: (X, y))
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from nnlift.landscape.operators import (
    CurvatureOperator,
    HessianOperator,
    ParameterSelection,
    parameter_names,
    unflatten,
)

__all__ = ["SecondOrderOptimizer", "Newton", "backtracking_line_search", "spectral_solve"]


class SecondOrderOptimizer(torch.optim.Optimizer):
    """A torch optimizer over the selected parameters of `model` (`parameters`: None for all that require grad, names,
    or a predicate, as in `nnlift.landscape.parameter_names`) that evaluates the loss itself; see the module's
    closure contract. One parameter group. The optimizer-wide state (step count, damping, warm starts) is kept in
    `self.state` of the first parameter, so `state_dict`/`load_state_dict` carry it."""

    def __init__(self, model: torch.nn.Module, loss_fn: Callable, defaults: dict,
                 parameters: ParameterSelection = None):
        self.model, self.loss_fn = model, loss_fn
        self.names = parameter_names(model, parameters)
        named = dict(model.named_parameters())
        super().__init__([named[name] for name in self.names], defaults)

    def add_param_group(self, param_group: dict) -> None:
        if self.param_groups:
            raise ValueError(f"{type(self).__name__} optimises one flat parameter vector: it has one parameter group")
        super().add_param_group(param_group)

    @property
    def global_state(self) -> dict:
        """The optimizer-wide state (stored under the first parameter)."""
        return self.state[self.param_groups[0]["params"][0]]

    def _operator(self, closure: Callable | None, kind: type[CurvatureOperator]) -> CurvatureOperator:
        """The curvature operator at the current parameters on the closure's data; `.objective` is the loss."""
        if closure is None:
            raise ValueError(f"{type(self).__name__}.step needs a closure that returns the step's data: one batch "
                             "(X, y) or a re-iterable of batches")
        return kind(self.model, self.loss_fn, closure(), parameters=self.names)

    def _write(self, theta: torch.Tensor) -> None:
        params = self.param_groups[0]["params"]
        with torch.no_grad():
            for param, value in zip(params, unflatten(theta, [p.shape for p in params]), strict=True):
                param.copy_(value)


def backtracking_line_search(loss_at: Callable[[float], float], f0: float, slope: float, *, step: float = 1.0,
                             shrink: float = 0.5, c: float = 1e-4, max_tries: int = 30) -> tuple[float, float]:
    """Armijo backtracking (Nocedal & Wright 2006, Algorithm 3.1): the first t = step·shrink^j, j < max_tries, with
    a finite loss_at(t) ≤ f0 + c·t·min(slope, 0), `slope` = ∇Lᵀp; a direction that is not one of descent must at
    least not raise the loss. Returns (t, loss_at(t)), or (0, f0) when no t passes."""
    t = step
    for _ in range(max_tries):
        value = loss_at(t)
        if math.isfinite(value) and value <= f0 + c * t * min(slope, 0.0):
            return t, value
        t *= shrink
    return 0.0, f0


def spectral_solve(values: torch.Tensor, vectors: torch.Tensor, rhs: torch.Tensor, shift: float) -> torch.Tensor:
    """(U diag(values + shift) Uᵀ)⁺ rhs for orthonormal U = `vectors`: eigenvalues of the shifted matrix within
    P·eps·max|values + shift| of zero count as zero (the pseudo-inverse leaves those directions alone)."""
    shifted = values + shift
    cutoff = len(values) * torch.finfo(values.dtype).eps * shifted.abs().max()
    inverse = torch.where(shifted.abs() > cutoff, 1 / torch.where(shifted == 0, 1, shifted), 0)
    return vectors @ (inverse * (vectors.T @ rhs))


class Newton(SecondOrderOptimizer):
    """Damped Newton's method: θ ← θ − t (H + λI)⁺ ∇L with the dense Hessian H (P×P: small problems only).

    H is `HessianOperator(...).to_dense()` (`torch.func`, reverse over reverse, one column block at a time), and the
    step is solved through its eigendecomposition (`spectral_solve`), so a singular H + λI is no error. λ = `damping`
    is fixed. With `line_search` t is the Armijo backtracking step from `lr` (`backtracking_line_search`), so the loss
    never rises; without it t = `lr`.

    An indefinite H is not corrected: along an eigenvector with eigenvalue μ < −λ the step climbs. Near a saddle the
    Newton step points at it, and the loss falls on the way there, so plain damped Newton is attracted to saddles
    (Dauphin et al. 2014, §3; what `SaddleFreeNewton` fixes); λ > −λ_min(H) makes every step one of descent.
    State: `step`, `step_size` (the last t) and `min_eigenvalue` (λ_min(H) at the last step's start).
    """

    def __init__(self, model: torch.nn.Module, loss_fn: Callable, *, lr: float = 1.0, damping: float = 0.0,
                 line_search: bool = True, shrink: float = 0.5, c: float = 1e-4, max_backtracks: int = 30,
                 parameters: ParameterSelection = None):
        if lr <= 0 or damping < 0:
            raise ValueError(f"need lr > 0 and damping >= 0, got lr={lr}, damping={damping}")
        super().__init__(model, loss_fn, dict(lr=lr, damping=damping, line_search=line_search, shrink=shrink, c=c,
                                              max_backtracks=max_backtracks), parameters)

    def step(self, closure: Callable | None = None) -> float:
        group, state = self.param_groups[0], self.global_state
        op = self._operator(closure, HessianOperator)
        objective = op.objective
        theta, f0, g = objective.point, objective.loss(), objective.gradient()
        H = op.to_dense()
        values, vectors = torch.linalg.eigh((H + H.T) / 2)
        p = -spectral_solve(values, vectors, g, group["damping"])
        if group["line_search"]:
            t, _ = backtracking_line_search(lambda t: objective.loss(theta + t * p), f0, float(g @ p),
                                            step=group["lr"], shrink=group["shrink"], c=group["c"],
                                            max_tries=group["max_backtracks"])
        else:
            t = group["lr"]
        self._write(theta + t * p)
        state.update(step=state.get("step", 0) + 1, step_size=t, min_eigenvalue=float(values[0]))
        return f0
