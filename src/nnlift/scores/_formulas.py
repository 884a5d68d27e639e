"""Score functions from derivatives of log p: S_m = (-1)^m grad^m p / p in terms of g, H, T, Q.

With l = log p, g = grad l, H = grad^2 l, T = grad^3 l, Q = grad^4 l (Faa di Bruno / the recursion
S_{m+1} = -grad S_m + S_m ⊗ S_1 of Janzamin, Sedghi, Anandkumar 2014):
  S1 = -g,  S2 = g⊗g + H,  S3 = -(g⊗g⊗g + sym3(g⊗H) + T),
  S4 = g^{⊗4} + sym6(g⊗g⊗H) + sym3(H⊗H) + sym4(g⊗T) + Q,
where symN sums the N distinct placements. This module assembles the projected tensors S_m(Q, ..., Q) from
row sums of the projected derivatives, shared by every score that is not Gaussian.
"""

from __future__ import annotations

import itertools

import torch

__all__ = ["assemble_projection", "symmetrize"]


def symmetrize(tensor: torch.Tensor) -> torch.Tensor:
    """The average of a tensor over all permutations of its indices."""
    perms = list(itertools.permutations(range(tensor.ndim)))
    return sum(tensor.permute(p) for p in perms) / len(perms)


def assemble_projection(order: int, sums: dict[str, torch.Tensor]) -> torch.Tensor:
    """sum_r w_r S_order(x_r)(Q, ..., Q) from row sums of projected derivatives (gq = Q^T g, hq = Q^T H Q, ...).

    `sums` holds, for order 2: "gg" = sum w gq⊗gq, "h" = sum w hq; order 3: "ggg", "gh" = sum w gq⊗hq, "t";
    order 4: "gggg", "ggh", "hh", "gt" = sum w gq⊗tq, "q". Symmetrising a product sums its placements up to
    their count (sym3(g⊗H) -> 3 sym(g⊗H), ...), and also makes a learned score's Jacobian symmetric.
    """
    if order == 2:
        return symmetrize(sums["gg"] + sums["h"])
    if order == 3:
        return -symmetrize(sums["ggg"] + 3.0 * sums["gh"] + sums["t"])
    if order == 4:
        return symmetrize(sums["gggg"] + 6.0 * sums["ggh"] + 3.0 * sums["hh"] + 4.0 * sums["gt"] + sums["q"])
    raise ValueError(f"order must be 2, 3 or 4 for a projected moment, got {order}")
