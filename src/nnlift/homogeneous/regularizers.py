"""Regularisers Θ(W) = Σ_i θ(W_i), the objective ½||Y - Φ(W)||²_F + λ Θ(W), and its profile along W -> tW.

- "matched": θ(W_i) = Π_l ||W_{l,i}||_F, positively homogeneous of the network's degree p, as Haeffele & Vidal's
  theory requires (2017 CVPR: Φ and Θ positively homogeneous of the same degree). For matrix factorization it
  is Σ_i ||u_i|| ||v_i||, whose minimum over the factorizations of W is ||W||_* (variational nuclear norm).
- "weight_decay": θ(W_i) = ½ Σ_l ||W_{l,i}||²_F, degree 2 whatever the depth. By AM-GM its minimum over the
  rescalings of a subnetwork that leave φ unchanged is (p/2) Π_l ||W_{l,i}||^{2/p}: the matched term when
  p = 2, a concave power of it when p > 2 (the degree mismatch the Vidal tutorial warns about).

Local descent uses the smooth surrogate (1/p) Σ_l ||W_{l,i}||^p of the matched term: by AM-GM it is >= the
product with equality at balanced subnetworks, so both have the same minima (and at p = 2 it is weight decay).
"""

from __future__ import annotations

import numpy as np
import torch

from .networks import ParallelNetwork, as_targets

__all__ = ["PENALTIES", "objective", "penalty_terms", "ray_profile", "squared_loss", "unit_profile"]

PENALTIES = ("matched", "weight_decay")


def penalty_terms(net: ParallelNetwork, penalty: str = "matched", smooth: bool = False,
                  layers: list[torch.Tensor] | None = None) -> torch.Tensor:
    """The (r,) terms θ(W_i); `smooth` gives the differentiable surrogate of "matched" (same minima)."""
    if penalty not in PENALTIES:
        raise ValueError(f"penalty must be one of {PENALTIES}, got {penalty!r}")
    layers = net.layers if layers is None else layers
    squares = torch.stack([W.pow(2).flatten(1).sum(1) for W in layers], dim=1)   # (r, p), differentiable at 0
    if penalty == "weight_decay":
        return 0.5 * squares.sum(1)
    p = len(layers)
    return squares.pow(p / 2).sum(1) / p if smooth else squares.sqrt().prod(1)


def squared_loss(net: ParallelNetwork, X, Y, layers: list[torch.Tensor] | None = None) -> torch.Tensor:
    """ℓ(Y, Φ) = ½ ||Y - Φ(X, W)||²_F."""
    return 0.5 * (as_targets(Y) - net(X, layers)).pow(2).sum()


def objective(net: ParallelNetwork, X, Y, lam: float, penalty: str = "matched") -> float:
    """½ ||Y - Φ(X, W)||²_F + λ Σ_i θ(W_i)."""
    return float(squared_loss(net, X, Y) + lam * penalty_terms(net, penalty).sum())


def ray_profile(net: ParallelNetwork, X, Y, lam: float, penalty: str, ts) -> np.ndarray:
    """f(tW) - f(0) for each t: the loss moves like t^p and θ like t^p ("matched") or t² ("weight_decay"),
    so for p > 2 weight decay makes W = 0 a strict local minimum (a barrier before any descent)."""
    zero = objective(net.scaled(0.0), X, Y, lam, penalty)
    return np.array([objective(net.scaled(float(t)), X, Y, lam, penalty) - zero for t in ts])


def unit_profile(net: ParallelNetwork, X, Y, lam: float, penalty: str, unit, ts) -> np.ndarray:
    """f(W with the subnetwork t·w appended) - f(W) for each t (w: one array per layer, e.g. a polar maximiser)."""
    base = objective(net, X, Y, lam, penalty)
    return np.array([objective(net.append([float(t) * np.asarray(W) for W in unit]), X, Y, lam, penalty) - base
                     for t in ts])
