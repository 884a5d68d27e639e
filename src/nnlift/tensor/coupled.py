"""Coupled symmetric CP: several tensors that share their rank-one factors, T_j = sum_i w_ij a_i^{⊗m}.

A network with p outputs y_j = sum_i c_ij sigma(a_i^T x + b_i) has cross-moments E[y_j S_m(x)] =
sum_i c_ij E[sigma^(m)] a_i^{⊗m} (Janzamin, Sedghi & Anandkumar 2015, Lemma 6, for each output): one set of
directions, one weight per (output, neuron). Decomposing a random mix of the outputs loses the outputs in which
a neuron is strong and the mix cancels it; the coupled fit uses every output:

  1. the shared span: top-`rank` left singular vectors of the unfoldings of all T_j side by side;
  2. Jennrich's simultaneous diagonalisation on the projected tensors, each pencil a random mix over outputs
     *and* slices (every slice of every output is B D Bᵀ with the same B), order 4 reduced to 3 by one random
     contraction;
  3. alternating refinement on the full tensors: per-output weights by least squares (normal equations with
     Gram (A^T A)^{∘m}), then each factor by the coupled power step a_i <- sum_j w_ij R_ij(I, a_i, ..., a_i),
     R_ij the part of T_j not explained by the other factors (kept only while the residual falls).

Dense tensors only: system identification keeps exact dense moment sums for d up to a few dozen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from ._multilinear import contract_dense, cp_to_tensor, normalize_columns, project_dense
from .jennrich import _real_directions

__all__ = ["CoupledCP", "coupled_cp"]


@dataclass(frozen=True)
class CoupledCP:
    """weights (p, rank), unit factors (d, rank), relative residual sqrt(sum_j ||T_j - CP_j||^2 / sum_j ||T_j||^2)."""

    weights: np.ndarray
    factors: np.ndarray
    residual: float


def coupled_cp(tensors: np.ndarray, rank: int, random_state=None, *, n_pencils: int = 8, n_iter: int = 100,
               tol: float = 1e-10, init: np.ndarray | None = None) -> CoupledCP:
    """Decompose p dense symmetric tensors (array (p, d, ..., d), order 3 or 4) with shared factors; `init` (d, rank)
    factors skip steps 1-2 and are refined directly (a warm start)."""
    tensors = np.asarray(tensors, dtype=np.float64)
    if tensors.ndim not in (4, 5) or len(set(tensors.shape[1:])) != 1:
        raise ValueError(f"tensors must be (p, d, d, d) or (p, d, d, d, d), got shape {tensors.shape}")
    p, d, order = tensors.shape[0], tensors.shape[1], tensors.ndim - 1
    if not 1 <= rank <= d:
        raise ValueError(f"rank must be in 1..{d} (linearly independent factors), got {rank}")
    if init is not None:
        return _refine(tensors, _fit(tensors, normalize_columns(np.asarray(init, dtype=np.float64))), n_iter, tol)
    rng = np.random.default_rng(random_state)
    unfolded = np.concatenate([t.reshape(d, -1) for t in tensors], axis=1)
    basis = scipy.linalg.svd(unfolded, full_matrices=False)[0][:, :rank]
    projected = np.stack([project_dense(t, basis) for t in tensors])
    if order == 4:
        projected = projected @ rng.standard_normal(rank)
    best = None
    for _ in range(n_pencils):
        mix_a, mix_b = rng.standard_normal((2, p))
        slice_a = np.tensordot(mix_a, projected, axes=1) @ rng.standard_normal(rank)
        slice_b = np.tensordot(mix_b, projected, axes=1) @ rng.standard_normal(rank)
        # M_a z = mu M_b z has z = B^{-T} e_j, so M_b z is proportional to b_j (as in `jennrich_cp`).
        vectors = _real_directions(slice_b @ scipy.linalg.eig(slice_a, slice_b)[1])
        factors = normalize_columns(basis @ vectors)
        candidate = _fit(tensors, factors)
        if best is None or candidate.residual < best.residual:
            best = candidate
    return _refine(tensors, best, n_iter, tol)


def _weights(tensors: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares (p, rank) weights for fixed factors, (A^T A)^{∘m} w_j = (T_j(a_i, ..., a_i))_i per output, and
    the right-hand sides."""
    order = tensors.ndim - 1
    gram = (factors.T @ factors) ** order
    rhs = np.stack([np.einsum("ij,ij->j", factors, contract_dense(t, factors)) for t in tensors])
    return scipy.linalg.lstsq(gram, rhs.T)[0].T, rhs


def _fit(tensors: np.ndarray, factors: np.ndarray) -> CoupledCP:
    """The least-squares weights and the residual. With those weights <T_j, CP_j> = ||CP_j||^2 = w_j . rhs_j, so
    ||T_j - CP_j||^2 = ||T_j||^2 - w_j . rhs_j without forming CP_j; below 1e-6 ||T||^2 that difference loses digits
    to cancellation and the residual is formed densely."""
    weights, rhs = _weights(tensors, factors)
    order = tensors.ndim - 1
    total = float(np.sum(tensors**2))
    error = total - float(np.sum(weights * rhs))
    if error < 1e-6 * total:
        error = sum(np.linalg.norm(t - cp_to_tensor(w, factors, order)) ** 2
                    for t, w in zip(tensors, weights, strict=True))
    error = max(error, 0.0)
    return CoupledCP(weights, factors, float(np.sqrt(error / total)) if total > 0 else float(np.sqrt(error)))


def _refine(tensors: np.ndarray, start: CoupledCP, n_iter: int, tol: float) -> CoupledCP:
    """Alternate least-squares weights and coupled power steps on each factor while the residual falls."""
    order = tensors.ndim - 1
    current = start
    for _ in range(n_iter):
        factors, weights = current.factors.copy(), current.weights
        for i in range(factors.shape[1]):
            images = np.stack([contract_dense(t, factors[:, i:i + 1])[:, 0] for t in tensors])  # (p, d)
            overlaps = (factors.T @ factors[:, i]) ** (order - 1)
            overlaps[i] = 0.0
            explained = (weights * overlaps) @ factors.T  # (p, d): the other factors' part of T_j(I, a_i, ...)
            step = weights[:, i] @ (images - explained)
            norm = np.linalg.norm(step)
            if norm > 0:
                factors[:, i] = step / norm
        candidate = _fit(tensors, factors)
        if candidate.residual >= current.residual - tol:
            break
        current = candidate
    return current
