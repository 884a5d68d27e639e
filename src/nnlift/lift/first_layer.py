"""First layer of NN-LIFT: CP decomposition of E[y · S_m(x)] (Janzamin, Sedghi, Anandkumar 2015, Alg. 1).

E[y · S_m(x)] = sum_j lambda_j a_j^{⊗m} with lambda_j = a2_j E[sigma^(m)(a_j^T x + b_j)] (Lemma 2), so the
unit-norm CP factors are the first-layer directions. Which order carries signal depends on the activation:
odd-part activations (tanh, sigmoid) have E[sigma'''] != 0 at zero bias; ReLU, GELU and softplus are odd
around a linear term, E[sigma'''(z)] = 0, and need m = 4.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..activations import gaussian_derivative_expectation
from ..moments import CrossMoment
from ..tensor import cp_symmetric

__all__ = ["FirstLayerEstimate", "choose_order", "estimate_first_layer", "required_samples"]

_REL_STDERR = 0.1


def choose_order(activation) -> int:
    """3 if the activation's third derivative has a non-negligible Gaussian mean at zero bias, else 4."""
    third = abs(gaussian_derivative_expectation(activation, 3))
    fourth = abs(gaussian_derivative_expectation(activation, 4))
    return 3 if third >= 0.25 * fourth else 4


def required_samples(row_norm_sq: np.ndarray, weights: np.ndarray, rel_stderr: float = _REL_STDERR) -> np.ndarray:
    """Rows needed so that the standard error of T(I, a_j, ..., a_j) is `rel_stderr` * |lambda_j|.

    The contraction is a mean of n i.i.d. vectors with second moment `row_norm_sq`, so its error norm is about
    sqrt(row_norm_sq / n) (the concentration step of the paper's sample-complexity bound, Theorem 3).
    """
    return np.ceil(row_norm_sq / (rel_stderr * np.abs(weights)) ** 2)


@dataclass
class FirstLayerEstimate:
    """Unit-norm directions (d, k), CP weights lambda (k,) and the numbers behind them."""

    directions: np.ndarray
    weights: np.ndarray
    diagnostics: dict = field(default_factory=dict)


def estimate_first_layer(X, y, n_hidden: int, order: int, score, *, random_state=None, device=None,
                         dtype=None, chunk_rows: int | None = None, cp_options: dict | None = None
                         ) -> FirstLayerEstimate:
    """Directions of the first layer from the rank-`n_hidden` symmetric CP of E[y · S_order(x)]."""
    kwargs = {} if chunk_rows is None else {"chunk_rows": chunk_rows}
    moment = CrossMoment(X, y, order=order, score=score, device=device, dtype=dtype, **kwargs)
    cp = cp_symmetric(moment, n_hidden, random_state=random_state, **(cp_options or {}))
    weights, directions = cp
    row_norm_sq = moment.row_norm_sq(directions)
    needed = required_samples(row_norm_sq, weights)
    diagnostics = dict(cp.diagnostics)
    diagnostics.update({
        "order": order,
        "moment_passes": moment.passes,
        "component_weights": weights.tolist(),
        "component_stderr": np.sqrt(row_norm_sq / moment.n_samples).tolist(),
        "samples_needed": int(needed.max()),
        "gaussianity": getattr(moment.score, "gaussianity_", None),
    })
    return FirstLayerEstimate(directions, weights, diagnostics)
