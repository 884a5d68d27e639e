"""Refinement of CP factors on the full operator, correcting the error of the subspace they were found in.

One contract call Y = [T(I, a_j, ..., a_j)]_j per step gives both
  * the least-squares weights at the current factors, (<a_i, a_j>^m) lambda = (<a_j, Y_j>), and the explained
    energy lambda^T b = ||T||^2 - ||T - sum_j lambda_j a_j^{⊗m}||^2 (b_j = <a_j, Y_j>), which scores the factors;
  * the symmetric ALS update (Kolda & Bader 2009, §3.4, one mode with the others held at the current factors):
    M C = Y with C = (<a_l, a_j>^{m-1}), i.e. m_j = T(I, a_j, ..., a_j) - sum_{l != j} m_l <a_l, a_j>^{m-1} --
    the deflation-corrected power step for every component at once, with the other components' contributions
    solved jointly; a_j <- m_j / ||m_j||.
The factors with the largest explained energy are returned, so refinement never worsens the fit of T.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from ._multilinear import fit_weights, normalize_columns, signs_of

__all__ = ["refine_on_operator"]


def refine_on_operator(op, factors: np.ndarray, *, n_iter: int, tol: float
                       ) -> tuple[np.ndarray, np.ndarray, int]:
    """(weights, unit factors, contract calls) after at most `n_iter` updates, i.e. at most n_iter + 1 calls.

    Stops early when an update moves every factor by less than `tol` or lowers the explained energy.
    """
    if n_iter < 0:
        raise ValueError(f"n_iter must be at least 0, got {n_iter}")
    best = None
    for step in range(1, n_iter + 2):
        Y = op.contract(factors)
        weights, rhs = fit_weights(factors, Y, op.order)
        energy = float(weights @ rhs)
        if best is not None and energy < best[2]:
            break
        best = (weights, factors, energy)
        if step == n_iter + 1:
            break
        cross = (factors.T @ factors) ** (op.order - 1)
        update = scipy.linalg.lstsq(cross, Y.T)[0].T
        update = normalize_columns(update * signs_of(np.einsum("ij,ij->j", update, factors)))
        if np.max(np.linalg.norm(update - factors, axis=0)) < tol:
            break
        factors = update
    return best[0], best[1], step
