"""Jennrich's simultaneous diagonalisation (Harshman 1970; Leurgans, Ross & Abel 1993) on a small dense tensor.

For T = sum_j lambda_j b_j^{⊗3} with independent b_j, the slices M_a = T(I, I, a) = B diag(lambda * B^T a) B^T
give M_a M_b^{-1} = B diag(lambda * B^T a / (lambda * B^T b)) B^{-1}, whose eigenvectors are the b_j. Order 4 is
reduced to order 3 by contracting one mode with a random vector c (weights lambda_j <b_j, c>); the weights are
re-fitted by least squares on the original tensor. Several random pencils (a, b) are tried and the one with
the lowest residual is kept.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from ._multilinear import contract_dense, fit_weights, normalize_columns, project_dense, relative_residual

__all__ = ["jennrich_cp"]


def jennrich_cp(T: np.ndarray, rank: int, rng: np.random.Generator, *, n_pencils: int
                ) -> tuple[np.ndarray, np.ndarray, float]:
    """(weights, unit factors (k, rank), relative residual) of a dense symmetric (k,)*m tensor, m in {3, 4}.

    When k > rank the tensor is first projected onto the top-`rank` left singular space of its unfolding.
    """
    k, order = T.shape[0], T.ndim
    basis = None
    small = T
    if k > rank:
        basis = scipy.linalg.svd(T.reshape(k, -1), full_matrices=False)[0][:, :rank]
        small = project_dense(T, basis)
    third = small if order == 3 else small @ rng.standard_normal(rank)
    best = None
    for _ in range(n_pencils):
        a, b = rng.standard_normal((2, rank))
        slice_a, slice_b = third @ a, third @ b
        # M_a z = mu M_b z has z = B^{-T} e_j, so M_b z is proportional to b_j.
        vectors = _real_directions(slice_b @ scipy.linalg.eig(slice_a, slice_b)[1])
        weights = fit_weights(vectors, contract_dense(small, vectors), order)[0]
        residual = relative_residual(small, weights, vectors)
        if best is None or residual < best[2]:
            best = (weights, vectors, residual)
    weights, vectors, residual = best
    factors = vectors if basis is None else basis @ vectors
    return weights, factors, residual


def _real_directions(X: np.ndarray) -> np.ndarray:
    """Unit real vectors from (possibly complex) eigenvectors: remove each column's phase, keep the real part."""
    largest = X[np.argmax(np.abs(X), axis=0), np.arange(X.shape[1])]
    phases = np.where(largest != 0, largest / np.abs(np.where(largest != 0, largest, 1)), 1)
    return normalize_columns(np.real(X / phases))
