"""First layer of NN-LIFT: CP decomposition of E[y · S_m(x)] (Janzamin, Sedghi, Anandkumar 2015, Alg. 1).

E[y · S_m(x)] = sum_j lambda_j a_j^{⊗m} with lambda_j = a2_j E[sigma^(m)(a_j^T x + b_j)] (Lemma 2), so the
unit-norm CP factors are the first-layer directions. Which order carries signal depends on the activation:
odd-part activations (tanh, sigmoid) have E[sigma'''] != 0 at zero bias; ReLU, GELU and softplus are even
around a linear term, E[sigma'''(z)] = 0, and need m = 4 as well as m = 3 (see `merge_components`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.linalg

from ..activations import gaussian_derivative_expectation
from ..moments import make_moment
from ..tensor import TWO_PASS, cp_symmetric
from ..tensor._multilinear import normalize_columns
from ..tensor.coupled import coupled_cp

__all__ = ["FirstLayerEstimate", "choose_order", "estimate_first_layer", "estimate_first_layer_coupled",
           "required_samples", "resolve_cp_options"]

_COUPLED_OVERSAMPLE = 5

_REL_STDERR = 0.1
_MAX_OVERLAP = 0.95


def resolve_cp_options(cp_options) -> dict:
    """`cp_symmetric` keyword arguments from None, a dict, or the name "two_pass" (`nnlift.tensor.TWO_PASS`)."""
    if cp_options is None:
        return {}
    if isinstance(cp_options, str):
        if cp_options != "two_pass":
            raise ValueError(f"cp_options must be a dict of cp_symmetric arguments or 'two_pass', got {cp_options!r}")
        return dict(TWO_PASS)
    if not isinstance(cp_options, dict):
        raise ValueError(f"cp_options must be a dict of cp_symmetric arguments or 'two_pass', got "
                         f"{type(cp_options).__name__}")
    return dict(cp_options)


def choose_order(activation) -> int | tuple[int, int]:
    """3 if the activation's third derivative has a non-negligible Gaussian mean at zero bias, else (3, 4).

    When E[sigma'''(z)] vanishes (ReLU, GELU, softplus) a neuron's third-order weight is proportional to its
    bias while the fourth-order one vanishes elsewhere, so both moments are decomposed and pooled.
    """
    third = abs(gaussian_derivative_expectation(activation, 3))
    fourth = abs(gaussian_derivative_expectation(activation, 4))
    return 3 if third >= 0.25 * fourth else (3, 4)


def required_samples(row_norm_sq: np.ndarray, weights: np.ndarray, rel_stderr: float = _REL_STDERR) -> np.ndarray:
    """Rows needed so that the standard error of T(I, a_j, ..., a_j) is `rel_stderr` * |lambda_j|.

    The contraction is a mean of n i.i.d. vectors with second moment `row_norm_sq`, so its error norm is about
    sqrt(row_norm_sq / n) (the concentration step of the paper's sample-complexity bound, Theorem 3).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        needed = np.ceil(row_norm_sq / (rel_stderr * np.abs(weights)) ** 2)
    return np.where(np.abs(weights) > 0, needed, np.inf)  # a zero-weight component is not measured at any n


def _most_needed(needed) -> int | float:
    """The largest requirement: an int, or inf when some component has zero weight."""
    largest = float(np.max(needed))
    return int(largest) if np.isfinite(largest) else largest


@dataclass
class FirstLayerEstimate:
    """Unit-norm directions (d, k), CP weights lambda (k,) and the numbers behind them; for a coupled estimate,
    `target_weights` (targets, k): each component's weight w_ij in each target's moment."""

    directions: np.ndarray
    weights: np.ndarray
    diagnostics: dict = field(default_factory=dict)
    target_weights: np.ndarray | None = None


def estimate_first_layer(X, y, n_hidden: int, order: int | tuple[int, ...], score, *, random_state=None,
                         device=None, dtype=None, chunk_rows: int | None = None, cp_options: dict | str | None = None,
                         client=None) -> FirstLayerEstimate:
    """Directions of the first layer from the rank-`n_hidden` symmetric CP of E[y · S_order(x)].

    X, y may be any row source `nnlift.moments.CrossMoment` streams (arrays, memmaps, torch tensors, Dask
    arrays); with a `distributed.Client` the passes run on its cluster. With a tuple of orders each moment is
    decomposed and the components are pooled by `merge_components`. `cp_options`: keyword arguments for
    `cp_symmetric`, or "two_pass" for `nnlift.tensor.TWO_PASS` (two passes over the rows per order).
    """
    if isinstance(order, tuple):
        estimates = [estimate_first_layer(X, y, n_hidden, m, score, random_state=random_state, device=device,
                                          dtype=dtype, chunk_rows=chunk_rows, cp_options=cp_options,
                                          client=client)
                     for m in order]
        return merge_components(estimates, n_hidden)
    kwargs = {} if chunk_rows is None else {"chunk_rows": chunk_rows}
    moment = make_moment(X, y, order=order, score=score, client=client, device=device, dtype=dtype, **kwargs)
    cp = cp_symmetric(moment, n_hidden, random_state=random_state, **resolve_cp_options(cp_options))
    weights, directions = cp
    row_norm_sq = moment.row_norm_sq(directions)
    stderr = np.sqrt(row_norm_sq / moment.n_samples)
    needed = required_samples(row_norm_sq, weights)
    diagnostics = dict(cp.diagnostics)
    diagnostics.update({
        "order": order,
        "moment_passes": moment.passes,
        "component_weights": weights.tolist(),
        "component_stderr": stderr.tolist(),
        "component_orders": [order] * len(weights),
        "component_samples_needed": needed.tolist(),
        "samples_needed": _most_needed(needed),
        "gaussianity": getattr(moment.score, "gaussianity_", None),
        "score": {"family": type(moment.score).__name__, **(getattr(moment.score, "diagnostics_", None) or {})},
    })
    return FirstLayerEstimate(directions, weights, diagnostics)


def estimate_first_layer_coupled(class_rows, n_hidden: int, order: int | tuple[int, ...], score, *,
                                 random_state=None, device=None, dtype=None, client=None) -> FirstLayerEstimate:
    """Directions shared by the moments E[t_j · S_order(x)] of several targets (a classifier's one-hot columns):
    T_j = sum_i w_ij a_i^{⊗m}, decomposed jointly (`nnlift.tensor.coupled_cp`) instead of one random mix of the
    targets, in which a neuron's contributions to different classes can cancel.

    `class_rows` is a list of (X, t_j) row sources, one per target (the same rows). The shared span comes from the
    images T_j(I, v, v) of every target side by side (two rounds of probes), each T_j is projected onto it and the
    small projected tensors are decomposed together. `moment_passes` counts 3 per target and order (two probe
    rounds, the projection), as `estimate_first_layer` counts its decomposition's passes. Diagnostics as
    `estimate_first_layer`; a component's weight is ||(w_ij)_j|| and its standard error treats the targets' errors
    as independent.
    """
    if isinstance(order, tuple):
        estimates = [estimate_first_layer_coupled(class_rows, n_hidden, m, score, random_state=random_state,
                                                  device=device, dtype=dtype, client=client) for m in order]
        return merge_components(estimates, n_hidden)
    moments = [make_moment(X, t, order=order, score=score, client=client, device=device, dtype=dtype)
               for X, t in class_rows]
    rng = np.random.default_rng(random_state)
    dim = moments[0].dim
    width = min(dim, n_hidden + _COUPLED_OVERSAMPLE)
    probes = np.linalg.qr(rng.standard_normal((dim, width)))[0]
    for _ in range(2):
        images = np.hstack([moment.contract(probes) for moment in moments])
        basis = scipy.linalg.svd(images, full_matrices=False)[0]
        probes = basis[:, :width]
    basis = basis[:, :n_hidden]
    joint = coupled_cp(np.stack([moment.project(basis) for moment in moments]), n_hidden, random_state=rng)
    directions = normalize_columns(basis @ joint.factors)
    weights = np.linalg.norm(joint.weights, axis=0)
    row_norm_sq = np.sum([moment.row_norm_sq(directions) * w**2 for moment, w in zip(moments, joint.weights,
                                                                                        strict=True)], axis=0)
    row_norm_sq = row_norm_sq / np.maximum(weights**2, np.finfo(float).tiny)
    stderr = np.sqrt(row_norm_sq / moments[0].n_samples)
    needed = required_samples(row_norm_sq, weights)
    score_used = moments[0].score
    return FirstLayerEstimate(directions, weights, {
        "order": order,
        "method": "coupled",
        "moment_passes": sum(moment.passes for moment in moments),
        "subspace_gap": None,
        "residual": joint.residual,
        "component_weights": weights.tolist(),
        "component_stderr": stderr.tolist(),
        "component_orders": [order] * n_hidden,
        "component_samples_needed": needed.tolist(),
        "samples_needed": _most_needed(needed),
        "gaussianity": getattr(score_used, "gaussianity_", None),
        "score": {"family": type(score_used).__name__, **(getattr(score_used, "diagnostics_", None) or {})},
    }, joint.weights)


def merge_components(estimates: list[FirstLayerEstimate], n_hidden: int,
                     max_overlap: float = _MAX_OVERLAP) -> FirstLayerEstimate:
    """Pool the components of several moment orders, keeping the `n_hidden` best-measured distinct ones.

    A neuron is invisible to the order-m moment where E[sigma^(m)(w^T x + b)] vanishes: for ReLU the
    third-order weight is -b phi(b) (zero at b = 0) and the fourth-order one (b^2 - 1) phi(b) (zero at |b| = 1),
    so no single order sees every neuron with b in (-1, 1). Components are ranked by signal-to-noise
    |lambda| / stderr and taken greedily, skipping any within |cos| > `max_overlap` of one already taken.
    """
    directions = np.hstack([e.directions for e in estimates])
    weights = np.concatenate([e.weights for e in estimates])
    stderr = np.concatenate([e.diagnostics["component_stderr"] for e in estimates])
    orders = np.concatenate([e.diagnostics["component_orders"] for e in estimates])
    ranking = np.argsort(-np.abs(weights) / stderr, kind="stable")
    chosen: list[int] = []
    for index in ranking:
        if len(chosen) < n_hidden and all(abs(directions[:, index] @ directions[:, j]) <= max_overlap
                                          for j in chosen):
            chosen.append(int(index))
    chosen += [int(i) for i in ranking if i not in chosen][: n_hidden - len(chosen)]
    per_order = [e.diagnostics for e in estimates]
    gaps = [g for g in (d.get("subspace_gap") for d in per_order) if g is not None]
    needed = np.concatenate([e.diagnostics["component_samples_needed"] for e in estimates])[chosen]
    diagnostics = {
        "order": [d["order"] for d in per_order],
        "per_order": per_order,
        "moment_passes": sum(d["moment_passes"] for d in per_order),
        "component_weights": weights[chosen].tolist(),
        "component_stderr": stderr[chosen].tolist(),
        "component_orders": orders[chosen].tolist(),
        "subspace_gap": max(gaps) if gaps else None,
        "residual": min(d["residual"] for d in per_order),
        "component_samples_needed": needed.tolist(),
        "samples_needed": _most_needed(needed),
        "gaussianity": per_order[0]["gaussianity"],
        "score": per_order[0]["score"],
    }
    target_weights = None
    if all(e.target_weights is not None for e in estimates):
        target_weights = np.hstack([e.target_weights for e in estimates])[:, chosen]
    return FirstLayerEstimate(directions[:, chosen], weights[chosen], diagnostics, target_weights)
