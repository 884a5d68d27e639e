"""Nonlinear conjugate gradients (Nocedal & Wright 2006, "Numerical Optimization", §5.2): Fletcher-Reeves
(Algorithm 5.4) and Polak-Ribière+ (eq. 5.45) with restarts, on a strong Wolfe line search (Algorithms 3.5, 3.6).

The line search is nnlift's own, not torch's private `torch.optim.lbfgs._strong_wolfe`: that one is not a public
API, and it returns its last point without saying whether the Wolfe conditions hold there, which CG needs to know
(Fletcher-Reeves directions are of descent only after strong Wolfe steps with c2 < 1/2, N&W Lemma 5.6).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["NonlinearCG", "LineSearchResult", "strong_wolfe_line_search"]

_METHODS = ("PR+", "FR")


@dataclass
class LineSearchResult:
    """The accepted step `t` with φ(t) (`value`), φ'(t) (`slope`) and the payload of that evaluation (`extra`);
    `evaluations` of φ in all; `wolfe`: whether t satisfies the strong Wolfe conditions. When it does not (the
    evaluations ran out), t is the lowest point found with sufficient decrease, t = 0 if there is none."""

    t: float
    value: float
    slope: float
    extra: Any
    evaluations: int
    wolfe: bool


def _cubic_minimizer(a: tuple, b: tuple, lower: float, upper: float) -> float:
    """N&W eq. (3.59): the minimiser of the cubic through the points a = (t, φ, φ') and b, clipped to
    [lower, upper]; the midpoint of that interval where the cubic has no finite minimiser."""
    (ta, fa, da), (tb, fb, db) = a[:3], b[:3]
    d1 = da + db - 3 * (fa - fb) / (ta - tb)
    square = d1 * d1 - da * db
    if not (math.isfinite(square) and square >= 0):
        return (lower + upper) / 2
    d2 = math.copysign(math.sqrt(square), tb - ta)
    denominator = db - da + 2 * d2
    t = tb - (tb - ta) * (db + d2 - d1) / denominator if denominator != 0 else math.nan
    return min(max(t, lower), upper) if math.isfinite(t) else (lower + upper) / 2


def strong_wolfe_line_search(phi: Callable[[float], tuple[float, float, Any]], value0: float, slope0: float,
                             t0: float, *, c1: float = 1e-4, c2: float = 0.1, max_evaluations: int = 25,
                             expansion: float = 10.0) -> LineSearchResult:
    """A step t > 0 with φ(t) ≤ φ(0) + c1·t·φ'(0) (sufficient decrease) and |φ'(t)| ≤ c2·|φ'(0)| (curvature), for
    0 < c1 < c2 < 1 and φ'(0) = `slope0` < 0: N&W Algorithm 3.5 (bracketing from t0, the next trial the cubic
    extrapolation (3.59) within [t_i + (t_i − t_{i−1})/100, expansion·t_i]) and Algorithm 3.6 (zoom, the trial the
    cubic interpolation of the bracket's ends within its middle 80%). `phi(t)` returns (φ(t), φ'(t), payload);
    a non-finite φ(t) counts as too high. At most `max_evaluations` evaluations of φ."""
    if not slope0 < 0:
        raise ValueError(f"the line search needs a descent direction, φ'(0) < 0; got {slope0}")
    previous = (0.0, value0, slope0, None)
    t, evaluations = t0, 0
    while evaluations < max_evaluations:
        value, slope, extra = phi(t)
        evaluations += 1
        point = (t, value, slope, extra)
        if not math.isfinite(value) or value > value0 + c1 * t * slope0 or (evaluations > 1 and value >= previous[1]):
            return _zoom(phi, value0, slope0, previous, point, c1, c2, max_evaluations, evaluations)
        if abs(slope) <= -c2 * slope0:
            return LineSearchResult(t, value, slope, extra, evaluations, True)
        if slope >= 0:
            return _zoom(phi, value0, slope0, point, previous, c1, c2, max_evaluations, evaluations)
        t = _cubic_minimizer(previous, point, t + (t - previous[0]) / 100, expansion * t)
        previous = point
    return LineSearchResult(*previous, evaluations, False)


def _zoom(phi, value0, slope0, low, high, c1, c2, max_evaluations, evaluations) -> LineSearchResult:
    """N&W Algorithm 3.6 on the bracket (low, high): `low` the lowest point so far with sufficient decrease, the
    interval between them contains strong Wolfe points."""
    while evaluations < max_evaluations:
        left, right = sorted((low[0], high[0]))
        margin = (right - left) / 10
        t = _cubic_minimizer(low, high, left + margin, right - margin)
        if not left < t < right:  # the bracket has shrunk below the resolution of floating point
            break
        value, slope, extra = phi(t)
        evaluations += 1
        point = (t, value, slope, extra)
        if not math.isfinite(value) or value > value0 + c1 * t * slope0 or value >= low[1]:
            high = point
            continue
        if abs(slope) <= -c2 * slope0:
            return LineSearchResult(t, value, slope, extra, evaluations, True)
        if slope * (high[0] - low[0]) >= 0:
            high = low
        low = point
    return LineSearchResult(*low, evaluations, False)


class NonlinearCG(torch.optim.Optimizer):
    """Nonlinear conjugate gradients: x_{k+1} = x_k + t_k d_k, d_k = −∇f_k + β_k d_{k−1}, t_k from
    `strong_wolfe_line_search` (c1, c2, at most `max_ls` evaluations), with Fletcher-Reeves
    β = ∇f_kᵀ∇f_k / ∇f_{k−1}ᵀ∇f_{k−1} (`method="FR"`, N&W Algorithm 5.4) or Polak-Ribière+
    β = max(0, ∇f_kᵀ(∇f_k − ∇f_{k−1}) / ∇f_{k−1}ᵀ∇f_{k−1}) (`"PR+"`, eq. 5.45).

    d_k restarts as −∇f_k (β = 0) at the first step, `restart_every` steps after the last restart (default: the
    number of parameters, N&W §5.2), where β_PR < 0 (PR+), and where d_k is not a direction of descent. The first
    trial step is t_{k−1}·∇f_{k−1}ᵀd_{k−1} / ∇f_kᵀd_k (N&W eq. 3.60), or `lr`·min(1, 1/‖∇f_k‖₁) at the first step
    and after a search that found no decrease. On a
    strictly convex quadratic with exact line searches both methods are linear CG and end in at most n steps.

    torch's closure contract, as for `torch.optim.LBFGS`: one parameter group; `step(closure)` makes one CG
    iteration, calls `closure` (it zeroes the gradients, computes the loss, calls `backward()` and returns the
    loss) at x_k and at every trial point, and returns the loss at x_k. The `.grad` left behind are those of the
    last trial point. State, under the first parameter so that `state_dict` carries it: `n_iter`, `prev_grad`
    (∇f_k), `direction` (d_k), `step_size` (t_k, 0 when the search found no decrease), `slope` (∇f_kᵀd_k),
    `since_restart`, `restarts`, `wolfe` (whether t_k satisfies the strong Wolfe conditions) and `func_evals`.
    """

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict], method: str = "PR+",
                 restart_every: int | None = None, line_search: str = "strong_wolfe", c1: float = 1e-4,
                 c2: float = 0.1, max_ls: int = 25, lr: float = 1.0):
        if method not in _METHODS:
            raise ValueError(f"method must be one of {list(_METHODS)}, got {method!r}")
        if line_search != "strong_wolfe":
            raise ValueError(f"line_search must be 'strong_wolfe' (the only one implemented), got {line_search!r}")
        if not 0 < c1 < c2 < 1:
            raise ValueError(f"the strong Wolfe conditions need 0 < c1 < c2 < 1, got c1={c1}, c2={c2}")
        if restart_every is not None and restart_every < 1:
            raise ValueError(f"restart_every must be a positive number of steps or None, got {restart_every}")
        if max_ls < 1 or lr <= 0:
            raise ValueError(f"need max_ls >= 1 and lr > 0, got max_ls={max_ls}, lr={lr}")
        super().__init__(params, dict(method=method, restart_every=restart_every, line_search=line_search, c1=c1,
                                      c2=c2, max_ls=max_ls, lr=lr))
        if len(self.param_groups) != 1:
            raise ValueError("NonlinearCG optimises one flat parameter vector: it takes one parameter group")
        self._params = self.param_groups[0]["params"]

    def _flat_grad(self) -> torch.Tensor:
        return torch.cat([torch.zeros(p.numel(), dtype=p.dtype, device=p.device) if p.grad is None
                          else p.grad.reshape(-1) for p in self._params]).clone()

    def _set(self, x: torch.Tensor) -> None:
        offset = 0
        for p in self._params:
            p.copy_(x[offset:offset + p.numel()].view_as(p))
            offset += p.numel()

    def _direction(self, g: torch.Tensor, state: dict) -> tuple[torch.Tensor, bool]:
        """d_k and whether it is a restart (d_k = −∇f_k)."""
        group = self.param_groups[0]
        restart_every = group["restart_every"] or g.numel()
        if "direction" not in state or state["since_restart"] >= restart_every:
            return -g, True
        previous = state["prev_grad"]
        numerator = g @ g if group["method"] == "FR" else g @ (g - previous)
        beta = float(numerator / (previous @ previous))
        if beta <= 0 or not math.isfinite(beta):
            return -g, True
        d = beta * state["direction"] - g
        return (d, False) if float(g @ d) < 0 else (-g, True)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:
        if closure is None:
            raise ValueError("NonlinearCG.step needs a closure that zeroes the gradients, computes the loss, calls "
                             "backward() and returns the loss")
        closure = torch.enable_grad()(closure)
        group, state = self.param_groups[0], self.state[self._params[0]]
        loss = closure()
        g, x = self._flat_grad(), torch.cat([p.detach().reshape(-1) for p in self._params]).clone()
        evaluations = state.get("func_evals", 0) + 1
        if not g.any():  # a stationary point: no direction to search
            state["func_evals"] = evaluations
            return loss
        d, restart = self._direction(g, state)
        slope = float(g @ d)
        t0 = state.get("step_size", 0.0) * state.get("slope", 0.0) / slope
        if not (math.isfinite(t0) and t0 > 0):
            t0 = group["lr"] * min(1.0, 1.0 / float(g.abs().sum()))

        def phi(t: float) -> tuple[float, float, torch.Tensor]:
            self._set(x + t * d)
            value = float(closure())
            gradient = self._flat_grad()
            return value, float(gradient @ d), gradient

        result = strong_wolfe_line_search(phi, float(loss), slope, t0, c1=group["c1"], c2=group["c2"],
                                          max_evaluations=group["max_ls"])
        self._set(x + result.t * d)
        state.update(n_iter=state.get("n_iter", 0) + 1, prev_grad=g, direction=d, step_size=result.t, slope=slope,
                     since_restart=1 if restart else state["since_restart"] + 1,
                     restarts=state.get("restarts", 0) + restart, wolfe=result.wolfe,
                     func_evals=evaluations + result.evaluations)
        return loss
