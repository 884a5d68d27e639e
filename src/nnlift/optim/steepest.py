"""Steepest descent with respect to a norm (Gunasekar, Lee, Soudry & Srebro 2018, "Characterizing implicit bias
in terms of optimization geometry", eq. (5.3)), and greedy coordinate descent, its l1 case.

The step is Δw ∈ argmin_v <g, v> + ||v||²/(2η) = −η ||g||_* u, u a unit-norm maximiser of <g, u> (so <g, u> =
||g||_*, the dual norm). In closed form, with q = p/(p − 1) the dual exponent of l_p:

- l2: Δw = −η g (gradient descent);
- l1: Δw = −η ||g||_∞ sign(g_j) e_j, j = argmax |g_j|: only the coordinate(s) of largest |g| move. On a tie the
  argmin is a whole face; `SteepestDescent` takes its centre (the k tied coordinates each move by 1/k of the
  step), `CoordinateDescent` the first tied coordinate;
- l∞: Δw = −η ||g||_1 sign(g) (sign descent scaled by ||g||_1);
- l_p, 1 < p < ∞: Δw = −η ||g||_q^{2−q} sign(g) |g|^{q−1}.

For separable data and the exponential loss, Gunasekar et al. (Thm. 5) show that steepest descent w.r.t. ||·||
maximises the margin in that same norm: min_i y_i <w_t, x_i> / ||w_t|| → max_{||w|| ≤ 1} min_i y_i <w, x_i>.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

__all__ = ["CoordinateDescent", "SteepestDescent", "steepest_direction"]

NORMS = ("l1", "l2", "linf", "lp")


def steepest_direction(grad: torch.Tensor, norm: str = "l2", p: float | None = None) -> torch.Tensor:
    """−||g||_* u for a flat gradient g: the steepest-descent step w.r.t. `norm` at unit learning rate."""
    norm, p = _check_norm(norm, p)
    if norm == "l2":
        return -grad
    size = grad.abs()
    top = size.max()
    if top == 0:
        return torch.zeros_like(grad)
    if norm == "l1":
        tied = size == top
        return -top * grad.sign() * tied / tied.sum()
    if norm == "linf":
        return -size.sum() * grad.sign()
    q = p / (p - 1)
    scaled = size / top  # in [0, 1]: no overflow for large q
    return -top * torch.linalg.vector_norm(scaled, ord=q) ** (2 - q) * grad.sign() * scaled ** (q - 1)


def _check_norm(norm: str, p: float | None) -> tuple[str, float | None]:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if norm != "lp":
        if p is not None:
            raise ValueError(f"p is only used with norm='lp', got p={p} with norm={norm!r}")
        return norm, None
    if p is None or not (1 < float(p) < math.inf):
        raise ValueError(f"norm='lp' needs 1 < p < inf (use norm='l1' or 'linf' for the end points), got p={p}")
    return norm, float(p)


def _check_lr(lr: float) -> None:
    try:
        valid = math.isfinite(lr) and lr > 0
    except TypeError:
        valid = False
    if not valid:
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")


def _flat_grad(params: list[torch.Tensor]) -> torch.Tensor:
    """The gradients of a parameter group as one flat vector (parameters in group order)."""
    first = params[0]
    for param in params:
        if param.grad.is_sparse:
            raise ValueError("sparse gradients are not supported")
        if param.dtype != first.dtype or param.device != first.device:
            raise ValueError("all parameters of a group must share dtype and device (they form one vector)")
    return torch.cat([param.grad.reshape(-1) for param in params])


def _add_flat(params: list[torch.Tensor], delta: torch.Tensor) -> None:
    offset = 0
    for param in params:
        param.add_(delta[offset:offset + param.numel()].view_as(param))
        offset += param.numel()


class _FlatOptimizer(torch.optim.Optimizer):
    """Shared closure handling: each parameter group is one flat vector w, its gradient g, and `_delta(g, group)`
    returns the step. Parameters without a gradient are left out of the vector (and do not move)."""

    def _delta(self, grad: torch.Tensor, group: dict) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        """One step from the gradients in `.grad`; `closure`, if given, recomputes the loss and its gradients
        (zero_grad, forward, backward) and its loss is returned."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [param for param in group["params"] if param.grad is not None]
            if params:
                _add_flat(params, self._delta(_flat_grad(params), group))
        return loss


class SteepestDescent(_FlatOptimizer):
    """Steepest descent w.r.t. `norm` ("l1", "l2", "linf", or "lp" with `p`): w ← w − η ||g||_* u (module
    docstring; Gunasekar et al. 2018, eq. (5.3)). The norm is that of each parameter group taken as one flat
    vector: with `model.parameters()` (one group) it is the norm of all the weights together, not a per-tensor one.
    On an l1 tie the tied coordinates share the step equally. No state besides the hyper-parameters."""

    def __init__(self, params: Iterable, lr: float, norm: str = "l2", p: float | None = None):
        _check_lr(lr)
        norm, p = _check_norm(norm, p)
        super().__init__(params, dict(lr=lr, norm=norm, p=p))

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        _check_lr(group["lr"])
        group["norm"], group["p"] = _check_norm(group["norm"], group["p"])

    def _delta(self, grad: torch.Tensor, group: dict) -> torch.Tensor:
        return steepest_direction(grad, group["norm"], group["p"]).mul_(group["lr"])


class CoordinateDescent(_FlatOptimizer):
    """Coordinate descent over each parameter group's flat vector: w_j ← w_j − η g_j for one coordinate j a step.

    rule="greedy" (Gauss-Southwell) picks j = argmax_j |g_j|, the first on a tie: the step −η g_j e_j =
    −η ||g||_∞ sign(g_j) e_j is then a steepest-descent step w.r.t. the l1 norm (one of the argmin's points on a
    tie), so on separable data it maximises the l1 margin (Gunasekar et al. 2018, Thm. 5; for the exponential
    loss this is AdaBoost's geometry, Telgarsky 2013). rule="cyclic" takes j = 0, 1, ..., d − 1, 0, ... (the
    position is kept in the state of the group's first parameter, so it survives `state_dict` round trips); it is
    not a steepest-descent method and the theorem says nothing about it.
    """

    RULES = ("greedy", "cyclic")

    def __init__(self, params: Iterable, lr: float, rule: str = "greedy"):
        _check_lr(lr)
        if rule not in self.RULES:
            raise ValueError(f"rule must be one of {self.RULES}, got {rule!r}")
        super().__init__(params, dict(lr=lr, rule=rule))

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        _check_lr(group["lr"])
        if group["rule"] not in self.RULES:
            raise ValueError(f"rule must be one of {self.RULES}, got {group['rule']!r}")

    def _delta(self, grad: torch.Tensor, group: dict) -> torch.Tensor:
        if group["rule"] == "greedy":
            j = int(torch.argmax(grad.abs()))
        else:
            state = self.state[group["params"][0]]
            j = state.get("coordinate", 0) % grad.numel()
            state["coordinate"] = j + 1
        delta = torch.zeros_like(grad)
        delta[j] = -group["lr"] * grad[j]
        return delta
