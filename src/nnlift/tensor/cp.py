"""Symmetric CP decomposition T = sum_j lambda_j a_j^{⊗m} of a dense tensor or a symmetric operator.

The first-layer step of NN-LIFT (Janzamin, Sedghi & Anandkumar 2015, Algorithm 1, with T = E[y · S_m(x)]):
  1. a basis Q of span{a_j}: whitening by a PSD second moment if one is given and usable (k columns), the
     block power range finder on the operator otherwise (k + image_oversample columns; the identity when
     d = k); for method="power", the span of the factors found by the robust tensor power method run
     implicitly on the operator;
  2. the image T(I, Q, ..., Q) (one call) and, from it, the projected tensor T_P = T(Q, ..., Q) -- or T_P alone
     by `project` where the image costs too much arithmetic (`_image_pays`) -- decomposed by Jennrich and/or
     the tensor power method, each polished by ALS; the lowest relative residual on T_P wins;
  3. factors lifted out of the image (one ALS step of the full first mode, `nnlift.tensor.image`; without the
     image, refinement's first step is that lift) and refined on the full operator (`refine_iter`).
Every `contract`/`contract_image`/`project` call on the operator is counted in diagnostics["passes"].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ._multilinear import (
    canonicalize,
    contract_dense,
    fit_weights,
    normalize_columns,
    project_dense,
    relative_residual,
    symmetrize,
)
from .als import symmetric_als
from .image import fit_weights_on_image, image_residual, lift_factors, subspace_image
from .jennrich import jennrich_cp
from .operator import DenseSymmetricTensor, as_operator
from .power import tensor_power_method
from .refine import refine_on_operator
from .subspace import NotWhitenableError, range_finder, whiten

__all__ = ["cp_symmetric", "CPResult", "METHODS", "TWO_PASS"]

METHODS = ("auto", "power", "jennrich", "als")
FALLBACK_GAP = 1.1
FALLBACK_POWER_ITER = 10
FALLBACK_MAX_PASSES = 200
TWO_PASS = {"subspace_iter": 1, "refine_iter": 0, "oversample": 90, "fallback": False}


@dataclass
class CPResult:
    """Weights (rank,) sorted by |weight| descending, unit factors (d, rank), and diagnostics.

    Unpacks as `weights, factors = result`.
    """

    weights: np.ndarray
    factors: np.ndarray
    diagnostics: dict = field(default_factory=dict)

    def __iter__(self):
        return iter((self.weights, self.factors))


class _CountedOperator:
    """The caller's operator with every call counted and its output checked for shape and finiteness."""

    def __init__(self, op):
        self.op, self.dim, self.order, self.passes = op, int(op.dim), int(op.order), 0

    def contract(self, V: np.ndarray) -> np.ndarray:
        return self._checked(self.op.contract(V), V.shape, "contract")

    def project(self, Q: np.ndarray) -> np.ndarray:
        return self._checked(self.op.project(Q), (Q.shape[1],) * self.order, "project")

    def contract_image(self, Q: np.ndarray) -> np.ndarray:
        return self._checked(subspace_image(self.op, Q), (self.dim,) + (Q.shape[1],) * (self.order - 1),
                             "contract_image")

    def _checked(self, out, shape: tuple, name: str) -> np.ndarray:
        self.passes += 1
        out = np.asarray(out, dtype=np.float64)
        if out.shape != shape:
            raise ValueError(f"the operator's {name} returned shape {out.shape}, expected {shape}")
        if not np.all(np.isfinite(out)):
            raise ValueError(f"the operator's {name} returned NaN or inf; check its data for non-finite values")
        return out


def cp_symmetric(T, rank: int, method: str = "auto", random_state=None, *, second_moment=None,
                 n_restarts: int = 10, n_iter: int = 100, tol: float = 1e-10, oversample: int = 10,
                 subspace_iter: int = 4, image_oversample: int = 5, refine_iter: int = 2, fallback: bool = True,
                 verbose: int = 0) -> CPResult:
    """Rank-`rank` symmetric CP of T, a dense (d,)*m array (m in {3, 4}) or a `SymmetricOperator`.

    method: "auto" (Jennrich and power method on the projected tensor, each polished by ALS, lowest residual
    wins; when the range finder's gap s_k/s_{k+1} is below FALLBACK_GAP the basis comes from the implicit power
    method with at most FALLBACK_POWER_ITER iterations per start instead, unless that would take more than
    FALLBACK_MAX_PASSES passes), "jennrich", "als" (ALS from `n_restarts` random starts), or "power" (robust
    tensor power method run implicitly on the operator with deflation, `n_restarts` starts and up to
    2 * `n_iter` calls per component).
    second_moment: optional PSD M2 = sum_j w_j a_j a_j^T; used to whiten when it is numerically PSD of rank
    `rank`, ignored otherwise (diagnostics["whitening"] says which).
    n_iter bounds power iterations and ALS sweeps; tol is their stopping tolerance and refinement's; oversample
    and subspace_iter set the range finder's extra probes and contract calls; image_oversample the basis
    vectors kept beyond `rank` for the image T(I, Q, ..., Q) (one call; the projected tensor is Q^T times it);
    refine_iter the refinement updates on the full operator (each one contract call, plus one to fit the final
    weights). The fewest passes: `TWO_PASS` (subspace_iter=1, refine_iter=0, no fallback) reads T twice
    (sketch, image), and the factors lifted out of the image keep most of the accuracy (`nnlift.tensor.image`).
    Same random_state, same result.

    diagnostics: "method" (as asked), "decomposer" (the small-tensor decomposer whose fit was kept),
    "candidate_residuals" (each decomposer's relative residual on T_P after ALS), "subspace" ("range_finder",
    "whitening", "identity" when d = rank, or "power_factors"), "whitening" (None, "used" or "rejected: why"),
    "subspace_singular_values" and "subspace_gap" s_k / s_{k+1} (range finder, or |eigenvalues| of M2 when
    whitening; None otherwise), "lift" (relative residuals of the image for the subspace factors and the lifted
    ones, and which were kept; without the image only "kept"), "residual" ||T_P - sum_j lambda_j (Q^T a_j)^{⊗m}||
    / ||T_P|| for the final factors, "iterations" per stage, "passes" (contract, image and project calls on T).
    """
    op = _CountedOperator(as_operator(T))
    _check_params(op.dim, rank, method, n_restarts, n_iter, tol, oversample, subspace_iter, refine_iter,
                  image_oversample)
    rng = np.random.default_rng(random_state)
    diagnostics = {"method": method, "order": op.order, "whitening": None, "subspace_singular_values": None,
                   "subspace_gap": None, "iterations": {}}
    whitening = _whitening(second_moment, rank, op.dim, diagnostics)
    settings = {"n_restarts": n_restarts, "n_iter": n_iter, "tol": tol}
    Q, power_factors = _basis(op, rank, method, rng, whitening, diagnostics, oversample=oversample,
                              subspace_iter=subspace_iter, image_oversample=image_oversample,
                              fallback=fallback and method == "auto", **settings)
    _log(verbose, f"subspace: {diagnostics['subspace']}, gap {diagnostics['subspace_gap']}, {op.passes} passes")
    use_image = _image_pays(op.dim, Q.shape[1], rank, op.order, refine_iter)
    weights, factors, projected = _fit_in_subspace(op, Q, rank, method, rng, whitening, power_factors,
                                                   diagnostics, use_image=use_image, **settings)
    _log(verbose, f"lift: {diagnostics['lift']['kept']}, {op.passes} passes")

    if refine_iter > 0:
        weights, factors, calls = refine_on_operator(op, factors, n_iter=refine_iter, tol=tol)
        diagnostics["iterations"]["refine"] = calls
    diagnostics["residual"] = relative_residual(projected, weights, Q.T @ factors)
    diagnostics["passes"] = op.passes
    _log(verbose, f"done: residual {diagnostics['residual']:.3g}, {op.passes} passes")
    weights, factors = canonicalize(weights, factors, op.order)
    return CPResult(weights, factors, diagnostics)


def _image_pays(dim: int, width: int, rank: int, order: int, refine_iter: int) -> bool:
    """Whether to read the image T(I, Q, ..., Q) (one call) rather than T(Q, ..., Q) and let refinement's first
    contract call lift the factors (two calls). Per row the image costs about d C(r + m - 2, m - 1) + d r
    multiply-adds (a product against the distinct entries), the other route r^m + d r + 2 d k; one pass saved
    is taken for up to twice the arithmetic (order 3, r = k + 5: the image up to d ~ 100 at k = 10, projection at
    d = 1000, k = 50). Always the image when refine_iter = 0: it is then the only lift."""
    image = dim * math.comb(width + order - 2, order - 1) + dim * width
    other = width**order + dim * width + 2 * dim * rank
    return refine_iter == 0 or image <= 2 * other


def _fit_in_subspace(op, Q, rank, method, rng, whitening, power_factors, diagnostics, *, use_image, n_restarts,
                     n_iter, tol) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weights, unit factors in R^d, projected tensor T(Q, ..., Q)) from one call on the operator.

    With the image T(I, Q, ..., Q) the factors are decomposed in T_P = Q^T image and lifted out of the image;
    whichever of the subspace and the lifted factors fits the image better is kept (diagnostics["lift"]).
    Without it, T_P comes from `project` and the factors Q b_j are left to refinement's first step to lift.
    """
    if use_image:
        image = op.contract_image(Q)
        projected = symmetrize(np.tensordot(Q, image, axes=(0, 0)))
    else:
        projected = symmetrize(op.project(Q))
    if not np.any(projected):
        raise ValueError("the tensor is zero on the estimated subspace, so there is nothing to decompose; "
                         "check that the tensor (or the data behind the operator) is not identically zero")
    if power_factors is not None:
        coefficients = Q.T @ power_factors
        candidates = {"power": (fit_weights(coefficients, contract_dense(projected, coefficients), op.order)[0],
                                coefficients)}
    else:
        scales = None if whitening is None else whitening.scales
        candidates = _small_candidates(projected, rank, method, rng, scales, n_restarts, n_iter, tol)
    weights, coefficients, diagnostics["decomposer"] = _polish(projected, candidates, n_iter, tol, diagnostics)
    if not use_image:
        diagnostics["lift"] = {"kept": "subspace (lifted by the refinement)"}
        return weights, normalize_columns(Q @ coefficients), projected
    choices = {"subspace": normalize_columns(Q @ coefficients), "lifted": lift_factors(image, Q, coefficients)}
    fits = {name: fit_weights_on_image(image, Q, factors) for name, factors in choices.items()}
    residuals = {name: image_residual(image, Q, fits[name], choices[name]) for name in choices}
    kept = min(residuals, key=residuals.get)
    diagnostics["lift"] = {"residual_subspace": residuals["subspace"], "residual_lifted": residuals["lifted"],
                           "kept": kept}
    return fits[kept], choices[kept], projected


def _basis(op, rank, method, rng, whitening, diagnostics, *, n_restarts, n_iter, tol, oversample, subspace_iter,
           image_oversample, fallback) -> tuple[np.ndarray, np.ndarray | None]:
    """Orthonormal basis Q (d, r) of the estimated span{a_j} (r = rank, or rank + image_oversample for the range
    finder), and the power method's factors if it ran."""
    power_factors = None
    if whitening is not None:
        Q, diagnostics["subspace"] = whitening.basis, "whitening"
        _record_spectrum(diagnostics, np.abs(whitening.eigenvalues), rank)
    elif method == "power":
        _, power_factors, calls = tensor_power_method(op, rank, rng, n_restarts=n_restarts, n_iter=n_iter, tol=tol)
        diagnostics["iterations"]["power"] = calls
        Q, diagnostics["subspace"] = np.linalg.qr(power_factors)[0], "power_factors"
    elif op.dim == rank:
        Q, diagnostics["subspace"] = np.eye(rank), "identity"
    else:
        width = min(op.dim, rank + image_oversample)
        Q, singular_values = range_finder(op, width, rng, oversample=max(0, oversample - (width - rank)),
                                          n_iter=subspace_iter)
        diagnostics["iterations"]["subspace"] = subspace_iter
        diagnostics["subspace"] = "range_finder"
        _record_spectrum(diagnostics, singular_values, rank)
        fallback_passes = rank * min(n_iter, FALLBACK_POWER_ITER)
        if fallback and diagnostics["subspace_gap"] < FALLBACK_GAP and fallback_passes > FALLBACK_MAX_PASSES:
            diagnostics["subspace"] = (f"range_finder (gap below {FALLBACK_GAP}; power-method fallback skipped: about "
                                       f"{fallback_passes} passes > {FALLBACK_MAX_PASSES}, use method='power')")
        elif fallback and diagnostics["subspace_gap"] < FALLBACK_GAP:
            # The block range finder sees each component through <a_j, v>^2 of unit probes spread over d
            # dimensions; at low signal-to-noise its rank-k gap vanishes and its basis misses components (which
            # the lift cannot restore), while the power method, whose iterate aligns with one a_j and sees the
            # full lambda_j, still recovers them (measured at d=100, k=10).
            _, power_factors, calls = tensor_power_method(op, rank, rng, n_restarts=n_restarts,
                                                          n_iter=min(n_iter, FALLBACK_POWER_ITER), tol=tol,
                                                          polish_iter=0)
            diagnostics["iterations"]["power"] = calls
            Q = np.linalg.qr(power_factors)[0]
            diagnostics["subspace"] = f"power_factors (range-finder gap below {FALLBACK_GAP})"
    return Q, power_factors


def _small_candidates(projected, rank, method, rng, scales, n_restarts, n_iter, tol) -> dict:
    """Starting (weights, unit coefficient vectors in the Q basis) per decomposer, before ALS polishing.

    With whitening scales s the decomposers see the orthogonally decomposable T_P(D, ..., D), D = diag(s)^{-1/2},
    and their factors b map back to D^{-1} b.
    """
    order = projected.ndim
    target = projected if scales is None else project_dense(projected, np.diag(scales ** -0.5))
    names = ("jennrich", "power") if method == "auto" else (method,)
    candidates = {}
    for name in names:
        if name == "jennrich":
            found = jennrich_cp(target, rank, rng, n_pencils=n_restarts)[1]
        elif name == "power":
            found = tensor_power_method(DenseSymmetricTensor(target), rank, rng, n_restarts=n_restarts,
                                        n_iter=n_iter, tol=tol)[1]
        else:
            found = _best_random_als(target, rank, rng, n_restarts, n_iter, tol)
        if scales is not None:
            found = normalize_columns(found * np.sqrt(scales)[:, None])
        candidates[name] = (fit_weights(found, contract_dense(projected, found), order)[0], found)
    return candidates


def _best_random_als(T, rank, rng, n_restarts, n_iter, tol) -> np.ndarray:
    """Factors of the best of `n_restarts` ALS runs from random unit starts."""
    best = None
    for _ in range(n_restarts):
        start = normalize_columns(rng.standard_normal((T.shape[0], rank)))
        weights = fit_weights(start, contract_dense(T, start), T.ndim)[0]
        _, factors, residual, _ = symmetric_als(T, weights, start, n_iter=n_iter, tol=tol)
        if best is None or residual < best[1]:
            best = (factors, residual)
    return best[0]


def _polish(projected, candidates, n_iter, tol, diagnostics) -> tuple[np.ndarray, np.ndarray, str]:
    """ALS-polish every candidate on T_P and keep the lowest residual; records residuals and sweeps."""
    residuals, sweeps, best = {}, {}, None
    for name, (weights, coefficients) in candidates.items():
        weights, coefficients, residuals[name], sweeps[name] = symmetric_als(projected, weights, coefficients,
                                                                   n_iter=n_iter, tol=tol)
        if best is None or residuals[name] < residuals[best[2]]:
            best = (weights, coefficients, name)
    diagnostics["candidate_residuals"] = residuals
    diagnostics["iterations"]["als"] = sweeps
    return best


def _whitening(second_moment, rank, dim, diagnostics):
    """The whitening of `second_moment`, or None (absent, or rejected with the reason in diagnostics)."""
    if second_moment is None:
        return None
    if np.shape(second_moment) != (dim, dim):
        raise ValueError(f"second_moment must have shape ({dim}, {dim}) to match the tensor, got "
                         f"{np.shape(second_moment)}")
    try:
        whitening = whiten(second_moment, rank)
    except NotWhitenableError as exc:
        diagnostics["whitening"] = f"rejected: {exc}"
        return None
    diagnostics["whitening"] = "used"
    return whitening


def _record_spectrum(diagnostics, values, rank) -> None:
    """Subspace singular values (or M2 eigenvalue magnitudes) and the gap s_k / s_{k+1} (inf if s_{k+1} = 0)."""
    diagnostics["subspace_singular_values"] = values
    if len(values) > rank:
        diagnostics["subspace_gap"] = float(values[rank - 1] / values[rank]) if values[rank] > 0 else np.inf


def _check_params(dim, rank, method, n_restarts, n_iter, tol, oversample, subspace_iter, refine_iter,
                  image_oversample) -> None:
    if not isinstance(rank, int | np.integer) or not 1 <= rank <= dim:
        raise ValueError(f"rank must be an integer between 1 and the dimension d={dim}, got {rank!r}; this "
                         "decomposition recovers at most d linearly independent components")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    counts = {"n_restarts": (n_restarts, 1), "n_iter": (n_iter, 1), "oversample": (oversample, 0),
              "subspace_iter": (subspace_iter, 1), "refine_iter": (refine_iter, 0),
              "image_oversample": (image_oversample, 0)}
    for name, (value, low) in counts.items():
        if not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not (isinstance(tol, int | float) and np.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive finite number, got {tol!r}")


def _log(verbose: int, message: str) -> None:
    if verbose:
        print(f"[cp_symmetric] {message}")
