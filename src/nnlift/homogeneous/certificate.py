"""Is a trained positively homogeneous network a global minimum? The polar certificate and the zero-subnetwork test.

For ℓ = ½||Y - Φ||²_F, Z = -∇ℓ(Φ(W)) / λ = (Y - Φ(W)) / λ and the matched regulariser Θ(W) = Σ_i Π_l ||W_{l,i}||:

- polar test (Haeffele & Vidal 2015; 2017 CVPR): W is a global minimum iff Ω°_θ(Z) <= 1 and
  <Z, Φ(W)> = Θ(W) (the second holds at every critical point: it is stationarity along W_i -> αW_i);
- zero-subnetwork test (2017 CVPR, Thm. 1): a local minimum with some W_i = 0 is a global minimum (at such a
  point perturbing W_i alone cannot descend, which forces Ω°_θ(Z) <= 1);
- a duality bound that holds at any W: with U >= Ω° a verified upper bound and Λ = (Y - Φ) / max(1, U),
  Ω°(Λ / λ) <= 1, so <Λ, Y> - ½||Λ||² is a lower bound on the convex problem min_Φ ½||Y - Φ||² + λ Ω(Φ), hence on
  every objective value of the network (Θ(W) >= Ω(Φ(W))); objective minus bound bounds the suboptimality. With
  U <= 1 the bound is λ (Θ - <Z, Φ>): the first-order equality, measured on the objective's scale (so W = 0,
  where Θ = 0, is certified when U <= 1).
- when Ω° > 1 the polar's maximiser w* (θ(w*) = 1) is a descent direction: adding the subnetwork ε^{1/p} w*
  changes the objective by -ε λ (Ω° - 1) + ε² ||φ(X, w*)||² / 2, minimised at ε* = λ (Ω° - 1) / ||φ(X, w*)||².

`certify` works on a matrix factorization (U, V) (X = None), a one-hidden-layer network given as (U, V) with X,
an `nn.Sequential(Linear, ReLU, Linear)` (a first-layer bias is folded into X as a column of ones; an output
bias is refused), or any `ParallelNetwork`. It certifies only from a verified upper bound on the polar: exact for
linear subnetworks and one-hidden-layer ReLU units on low-rank inputs (`polar`); elsewhere the ascent's lower bound
can refute optimality (a descent direction) but not certify it, and the message gives both bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .networks import ParallelNetwork, as_targets, as_tensor
from .polar import Polar, polar
from .regularizers import objective

__all__ = ["Certificate", "certify", "to_network", "unit_step"]


@dataclass(frozen=True)
class Certificate:
    """The outcome of `certify`; `message` says in one or two sentences what it means for the user's model.
    `polar` is a lower bound on the polar (attained by `direction`), `polar_upper` a verified upper bound,
    `stationarity_gap` is λ (Θ - <Z, Φ>) / objective and `lower_bound` the duality bound computed with
    `polar_upper`."""

    kind: str
    certified: bool
    polar: float
    polar_exact: bool
    polar_method: str
    tol: float
    stationarity_gap: float
    zero_subnetworks: tuple[int, ...]
    objective: float
    lower_bound: float
    suboptimality_bound: float
    step: float
    decrease: float
    direction: list[np.ndarray]   # the polar's maximiser w*, unit-norm layers (θ(w*) = 1)
    message: str
    polar_upper: float            # a verified upper bound on the polar (= polar when polar_exact)


def unit_step(net: ParallelNetwork, X, Y, lam: float, direction: list) -> tuple[float, float, list[np.ndarray]]:
    """(ε*, objective decrease, the subnetwork ε*^{1/p} w* to add) for a unit-norm direction w* such as the
    polar's maximiser (exact line search)."""
    a = net.subnetwork_outputs(X, [as_tensor(W)[None] for W in direction])[0]
    gain = float(((as_targets(Y) - net(X)) * a).sum()) - float(lam)        # = λ (Ω° - 1)
    curvature = float(a.pow(2).sum())
    if gain <= 0 or curvature == 0:
        return 0.0, 0.0, [np.zeros_like(W) for W in direction]
    eps = gain / curvature
    return float(eps), float(0.5 * gain ** 2 / curvature), [eps ** (1 / net.degree) * W for W in direction]


def to_network(model, X=None, activation: str | None = None) -> tuple[ParallelNetwork, torch.Tensor | None, str]:
    """(network, X to use, kind) for a ParallelNetwork, an (U, V) pair or an nn.Sequential(Linear, [ReLU,] Linear)."""
    if isinstance(model, ParallelNetwork):
        return model, (None if X is None else as_tensor(X)), f"parallel {model.activation} network"
    if isinstance(model, nn.Module):
        if activation is not None:
            raise ValueError("activation is read from the module's layers; leave it None for an nn.Module")
        return _from_module(model, X)
    U, V = model
    activation = activation or ("linear" if X is None else "relu")
    if activation not in ("linear", "relu"):
        raise ValueError(f"activation must be 'linear' or 'relu' (the positively homogeneous ones), got {activation!r}")
    net = (ParallelNetwork.matrix_factorization if activation == "linear" else ParallelNetwork.one_hidden_relu)(U, V)
    kind = "matrix factorization" if X is None else f"one-hidden-layer {activation} network"
    return net, (None if X is None else as_tensor(X)), kind


def _from_module(model: nn.Module, X) -> tuple[ParallelNetwork, torch.Tensor, str]:
    modules = list(model) if isinstance(model, nn.Sequential) else [model]
    parts = [m for m in modules if not isinstance(m, nn.Identity)]
    if [type(m) for m in parts] not in ([nn.Linear, nn.ReLU, nn.Linear], [nn.Linear, nn.Linear]):
        raise TypeError("certify takes nn.Sequential(Linear, ReLU, Linear) or (Linear, Linear), in that order; for "
                        "other models pass the weights as (U, V) or a ParallelNetwork")
    linears = [m for m in parts if isinstance(m, nn.Linear)]
    others = [m for m in parts if isinstance(m, nn.ReLU)]
    if X is None:
        raise ValueError("a torch model needs its inputs X")
    first, second = linears
    if second.bias is not None and bool(second.bias.detach().abs().max() > 0):
        raise ValueError("an output bias is not positively homogeneous: train without it (bias=False) or "
                         "subtract it from Y and certify the bias-free part for that fixed bias")
    U = first.weight.detach().T.double()
    X_in = X
    X = as_tensor(X)
    if first.bias is not None:
        U = torch.cat([U, first.bias.detach().double()[None]])
        X = torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype)], dim=1)
    activation = "relu" if others else "linear"
    V = second.weight.detach().double()
    net = ParallelNetwork([U.T[:, None, :], V.T[:, :, None]], activation)
    with torch.no_grad():
        rebuilt, original = net(X), model(as_tensor(X_in).to(first.weight.dtype)).double()
    if not torch.allclose(rebuilt, original, rtol=1e-5, atol=1e-6 * max(1.0, float(original.abs().max()))):
        raise ValueError("the network rebuilt from the module's weights does not reproduce model(X) (max difference "
                         f"{float((rebuilt - original).abs().max()):.3g}); pass the weights as (U, V) instead")
    kind = f"one-hidden-layer {activation} network" + (" (first-layer bias folded into X)" if first.bias is not None
                                                       else "")
    return net, X, kind


def certify(model, X, Y, lam: float, *, tol: float = 1e-4, zero_tol: float = 1e-6, activation: str | None = None,
            polar_method: str = "auto", n_restarts: int = 256, n_steps: int = 300,
            random_state: int = 0) -> Certificate:
    """Certify (or refute) global optimality of `model` for ½||Y - Φ||²_F + lam Σ_i Π_l ||W_{l,i}||_F.

    Use the loss's scale consistently: a model trained on torch's MSELoss (mean over the n·m entries of Y) plus
    weight decay wd (penalty wd/2 ||W||²) is certified with lam = wd · n · m / 2. Certified means the verified
    upper bound on the polar is <= 1 + tol and the duality bound puts the objective within tol (relative) of the
    global minimum; refuted means the polar's lower bound is > 1 + tol. Subnetworks with θ_i <= zero_tol Θ count
    as zero. `polar_method`, `n_restarts`, `n_steps`, `random_state` go to `polar`.
    """
    if not lam > 0:
        raise ValueError(f"lam must be > 0, got {lam}")
    net, X, kind = to_network(model, X, activation)
    Y = as_targets(Y)
    residual = Y - net(X)
    if residual.shape != Y.shape:
        raise ValueError(f"the model's output has shape {tuple(net(X).shape)}, Y has {tuple(Y.shape)}")
    pol = polar(net, X, residual / lam, polar_method, n_restarts, n_steps, random_state=random_state)
    theta = net.theta()
    total = float(theta.sum())
    value = objective(net, X, Y, lam)
    first_order = lam * total - float((residual * net(X)).sum())           # λ (Θ - <Z, Φ>)
    gap = first_order / value if value > 0 else 0.0
    zeros = tuple(int(i) for i in torch.nonzero(theta <= zero_tol * total).flatten()) if total > 0 \
        else tuple(range(net.r))
    Lambda = residual / max(1.0, pol.upper)
    lower = float((Lambda * Y).sum() - 0.5 * Lambda.pow(2).sum())
    slack = max(value - lower, 0.0)
    eps, decrease, _ = unit_step(net, X, Y, lam, pol.unit)
    certified = pol.upper <= 1 + tol and slack <= tol * value
    message = _message(certified, pol, gap, tol, zeros, slack, eps, decrease)
    return Certificate(kind, certified, pol.value, pol.exact, pol.method, tol, gap, zeros, value, lower, slack,
                       eps, decrease, pol.unit, message, pol.upper)


def _message(certified: bool, pol: Polar, gap: float, tol: float, zeros: tuple[int, ...], slack: float,
             eps: float, decrease: float) -> str:
    bounds = "exact" if pol.exact else f"lower bound {pol.value:.6g} ({pol.method}), verified upper bound"
    if certified:
        text = (f"Certified: polar {pol.upper:.6g} <= 1 + {tol:g} ({bounds}); the duality bound puts the objective "
                f"within {slack:.3g} of the global minimum.")
    elif pol.value > 1 + tol:
        text = (f"Not certified: polar {pol.value:.6g} > 1 + {tol:g}, so this is not a global minimum: adding a "
                f"subnetwork along the polar's maximiser (`direction`, each layer times eps^(1/p), eps = {eps:.3g}) "
                f"decreases the objective by {decrease:.3g} (exact line search). The global minimum lies between "
                f"{decrease:.3g} and {slack:.3g} below the objective; grow the network (homogeneous.grow).")
    elif pol.upper > 1 + tol:
        text = (f"Not certified: polar lower bound {pol.value:.6g} ({pol.method}), upper bound {pol.upper:.6g} > 1 + "
                f"{tol:g}: global optimality is undecided (the polar was not computed exactly). The duality bound with "
                f"the upper bound puts the objective within {slack:.3g} of the global minimum.")
    else:
        text = (f"Not certified: the polar is <= {pol.upper:.6g} <= 1 + {tol:g} ({bounds}) but the duality bound "
                f"leaves {slack:.3g} (first-order gap λ(Θ - <Z, Φ>) / objective = {gap:.2g}): not a critical "
                "point; run local descent to convergence first.")
    if zeros:
        text += f" Subnetworks {list(zeros)} are zero"
        if certified:
            text += "; consistent with Haeffele & Vidal's Thm. 1 (a local minimum with a zero subnetwork is global)."
        elif pol.value > 1 + tol:
            text += ("; so this point is not a local minimum (at a local minimum a zero subnetwork would force "
                     "polar <= 1, Haeffele & Vidal Thm. 1).")
        else:
            text += "."
    return text
