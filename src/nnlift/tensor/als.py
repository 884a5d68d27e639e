"""Alternating least squares for symmetric CP on a small dense tensor (Kolda & Bader 2009, SIAM Rev., §3.4).

The modes get separate factor matrices (plain CP-ALS, whose residual never increases), started from a symmetric
guess; each update is the least-squares solve A_n = T_(n) K (K^T K)^{-1} with K the Khatri-Rao product of the
other modes and K^T K the Hadamard product of their Gram matrices. For a symmetric T every unfolding T_(n) is the
same matrix. At the end the modes are symmetrised (sign-aligned mean of their unit columns) and the weights are
re-fitted by least squares; the start is returned instead if that fits better.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from ._multilinear import contract_dense, fit_weights, khatri_rao, normalize_columns, relative_residual, signs_of

__all__ = ["symmetric_als"]


def symmetric_als(T: np.ndarray, weights: np.ndarray, factors: np.ndarray, *, n_iter: int, tol: float
                  ) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Refine (weights, unit factors) of a dense symmetric tensor; returns them, the relative residual, sweeps.

    Stops after `n_iter` sweeps, when the relative residual drops below `tol`, or when a sweep lowers it by
    less than `tol` times its value.
    """
    order, k = T.ndim, T.shape[0]
    unfolding = T.reshape(k, -1)
    norm = np.linalg.norm(unfolding)
    if norm == 0 or n_iter < 1:
        raise ValueError(f"ALS needs a non-zero tensor and n_iter >= 1 (got norm {norm}, n_iter {n_iter})")
    start_residual = relative_residual(T, weights, factors)
    mats = [factors * weights] + [factors.copy() for _ in range(order - 1)]
    grams = [mat.T @ mat for mat in mats]
    previous = start_residual
    sweeps = 0
    while sweeps < n_iter:
        sweeps += 1
        for n in range(order):
            others = mats[:n] + mats[n + 1:]
            gram = np.prod([grams[i] for i in range(order) if i != n], axis=0)
            # mats[n] @ gram = unfolding @ K and gram is symmetric, so solve gram @ mats[n].T = (unfolding @ K).T
            mats[n] = scipy.linalg.lstsq(gram, (unfolding @ khatri_rao(others)).T)[0].T
            grams[n] = mats[n].T @ mats[n]
        fitted = mats[-1] @ khatri_rao(mats[:-1]).T
        residual = np.linalg.norm(unfolding - fitted) / norm
        if residual < tol or previous - residual < tol * previous:
            break
        previous = residual
    directions = [normalize_columns(mat) for mat in mats]
    aligned = [D * signs_of(np.einsum("ij,ij->j", D, directions[0])) for D in directions]
    symmetric = normalize_columns(sum(aligned))
    refitted = fit_weights(symmetric, contract_dense(T, symmetric), order)[0]
    residual = relative_residual(T, refitted, symmetric)
    if residual > start_residual:
        return weights, factors, start_residual, sweeps
    return refitted, symmetric, residual, sweeps
