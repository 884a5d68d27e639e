"""Scores of a user-supplied log-density: S_m = (-1)^m grad^m p / p by automatic differentiation.

`DensityScore(log_prob)` takes a torch callable mapping a (rows, d) batch to (rows,) log-densities (constants may
be dropped: only derivatives enter), or a density object from `nnlift.scores.densities` (which can be fitted to X
and, when its coordinates are independent, is contracted by matrix products instead of nested jvp).
"""

from __future__ import annotations

import torch
from torch.func import grad

from .._backend import DEFAULT_CHUNK_ROWS
from .autodiff import AutodiffScore, nested_directional_derivatives

__all__ = ["DensityScore"]


class DensityScore(AutodiffScore):
    """Score functions of the density exp(log_prob(x)) (Janzamin, Sedghi, Anandkumar 2014, Eq. 5).

    `log_prob` must treat rows independently and be differentiable four times with `torch.func` (no in-place
    updates of its input, no `.item()`/numpy inside). For order m the cost per row and probe is about 2^(m-1)
    forward-over-reverse evaluations; a separable density (`marginal_log_prob`) costs a few matrix products.
    """

    def __init__(self, log_prob):
        self.log_prob = log_prob

    @property
    def _density_log_prob(self):
        return getattr(self.log_prob, "log_prob", self.log_prob)

    @property
    def is_fitted(self) -> bool:
        """A plain callable needs no fitting; a density object says whether its parameters are set."""
        return bool(getattr(self.log_prob, "is_fitted", True))

    def fit(self, X, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> DensityScore:
        """Fit the density's missing parameters to X (density objects only); a plain callable is kept as is."""
        if not callable(self._density_log_prob):
            raise TypeError("log_prob must be a torch callable or a density with a log_prob method")
        if hasattr(self.log_prob, "fit"):
            self.log_prob.fit(X)
        self.n_features_in_ = X.shape[1]
        return self

    def log_density_gradient(self, X: torch.Tensor) -> torch.Tensor:
        """grad log p at each row, by reverse mode on the sum over rows (rows are independent)."""
        return grad(lambda x: self._density_log_prob(x).sum())(X)

    def marginal_derivatives(self, X: torch.Tensor) -> tuple | None:
        """(l', l'', l''', l'''') of the marginal log-densities, elementwise: the separable fast path.

        Taken from the density's closed form (`marginal_derivatives`) where it has one, else by nested jvp.
        """
        closed_form = getattr(self.log_prob, "marginal_derivatives", None)
        if closed_form is not None and (derivatives := closed_form(X)) is not None:
            return derivatives
        marginal = getattr(self.log_prob, "marginal_log_prob", None)
        if marginal is None:
            return None
        ones = torch.ones_like(X)
        out = nested_directional_derivatives(grad(lambda x: marginal(x).sum()), X, [ones, ones, ones])
        return out[0], out[1], out[3], out[7]
