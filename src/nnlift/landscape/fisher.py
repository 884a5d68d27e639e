"""The Monte Carlo Fisher (type-1) of a network's likelihood as an nnlift operator, on curvlinops'
`FisherMCLinearOperator`.

F̂ = (1/N) Σ_n (1/S) Σ_s g_ns g_nsᵀ, g_ns the gradient of the loss at targets ŷ_ns sampled from the model's
predictive distribution (a categorical for cross-entropy, a Gaussian for squared error): unbiased for the
type-2 Fisher, which for these losses equals the Gauss-Newton matrix (Martens 2020, §9.2; Kunstner et al. 2019),
and positive semi-definite of rank at most N·S. The empirical Fisher (`EmpiricalFisherOperator`) uses the observed
targets instead, and is not a curvature matrix in general (Kunstner et al. 2019).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ._curvlinops import copy_at_point
from .kfac_operator import _loss_module
from .operators import CurvatureOperator, ParameterSelection

__all__ = ["MCFisherOperator"]


class MCFisherOperator(CurvatureOperator):
    """The Monte Carlo Fisher with `mc_samples` sampled targets per row, seeded with `random_state` (the samples
    are drawn once per product and repeat between products). `loss_fn`: mse_loss, cross_entropy or
    binary_cross_entropy_with_logits (or their modules, reduction='mean'). Same data, `parameters`, `at` and
    `micro_batch_size` as the other operators; the caller's model is left alone (curvlinops runs on a copy)."""

    name = "Monte Carlo Fisher"

    def __init__(self, model: nn.Module, loss_fn: Callable, data, *, mc_samples: int = 1, random_state: int = 0,
                 parameters: ParameterSelection = None, at=None, micro_batch_size: int | None = None,
                 check_deterministic: bool = False):
        from curvlinops import FisherMCLinearOperator  # here, not at the top: its import is slow and warns

        if not (isinstance(mc_samples, int) and mc_samples >= 1):
            raise ValueError(f"mc_samples must be a positive integer, got {mc_samples!r}")
        super().__init__(model, loss_fn, data, parameters=parameters, at=at, micro_batch_size=micro_batch_size)
        copy, params = copy_at_point(self.objective)
        self._backend = FisherMCLinearOperator(copy, _loss_module(loss_fn), params, self.objective.data,
                                               check_deterministic=False, seed=int(random_state),
                                               mc_samples=mc_samples)
        if check_deterministic:
            self.check_deterministic()

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            return self._backend @ V
