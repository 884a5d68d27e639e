"""The subspace span{a_j} of T = sum_j lambda_j a_j^{⊗m}: a range finder on the operator, or whitening.

Range finder: block power iteration with the tensor (Halko, Martinsson & Tropp 2011, Alg. 4.3, with
T(I, v, ..., v) in place of A v). Every column of Y = [T(I, v_i, ..., v_i)]_i = sum_j lambda_j <a_j, v_i>^{m-1}
a_j lies in span{a_j} whatever the signs of lambda_j. Raw random probes see component j only through
<a_j, v>^{m-1} ~ d^{-(m-1)/2}, which noise swamps; after V <- orth(Y) the probes lie in the span and see the full
lambda_j, and a random rotation of V within its span mixes the components across probes.

Whitening (Anandkumar, Ge, Hsu, Kakade & Telgarsky 2014, JMLR, §4.3): for a PSD M2 = sum_j w_j a_j a_j^T of rank
k, W = U diag(s)^{-1/2} from its top-k eigenpairs makes T(W, ..., W) an orthogonally decomposable tensor.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.linalg

__all__ = ["range_finder", "whiten", "Whitening", "NotWhitenableError"]

_MIN_WHITEN_GAP = 10.0


class NotWhitenableError(ValueError):
    """M2 is not numerically PSD of the requested rank, so whitening would distort the tensor."""


class Whitening(NamedTuple):
    """W = basis / sqrt(scales): `basis` (d, k) orthonormal eigenvectors, `scales` (k,) their eigenvalues."""

    matrix: np.ndarray
    basis: np.ndarray
    scales: np.ndarray
    eigenvalues: np.ndarray


import os
ROT = os.environ.get("ROT", "1") == "1"
def range_finder(op, rank: int, rng: np.random.Generator, *, oversample: int, n_iter: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal basis Q (d, rank) of the estimated span{a_j} and the singular values of the last probe image.

    Uses `n_iter` contract calls with p = min(d, rank + oversample) probes each.
    """
    p = min(op.dim, rank + oversample)
    V = np.linalg.qr(rng.standard_normal((op.dim, p)))[0]
    for step in range(n_iter):
        Y = op.contract(V)
        if step < n_iter - 1:
            V = np.linalg.qr(Y)[0]
            if ROT: V = V @ np.linalg.qr(rng.standard_normal((p, p)))[0]
    U, s, _ = scipy.linalg.svd(Y, full_matrices=False)
    return U[:, :rank], s


def whiten(second_moment, rank: int) -> Whitening:
    """Whitening matrix of a PSD second moment M2 of numerical rank `rank`.

    Accepted when the `rank` eigenvalues of largest magnitude are positive and exceed every other eigenvalue's
    magnitude `_MIN_WHITEN_GAP` times; otherwise `NotWhitenableError` says which condition failed.
    """
    M = np.asarray(second_moment, dtype=np.float64)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"second_moment must be a square (d, d) matrix, got shape {M.shape}")
    if not np.all(np.isfinite(M)):
        raise ValueError("second_moment contains NaN or inf; pass a finite matrix or leave it None")
    if rank > M.shape[0]:
        raise ValueError(f"rank={rank} exceeds the dimension {M.shape[0]} of second_moment")
    values, vectors = scipy.linalg.eigh((M + M.T) / 2)
    ranking = np.argsort(-np.abs(values), kind="stable")
    values, vectors = values[ranking], vectors[:, ranking]
    top = values[:rank]
    if np.any(top <= 0):
        raise NotWhitenableError(f"second_moment has a non-positive eigenvalue ({top.min():.3g}) among its "
                                 f"{rank} largest in magnitude, so it is not PSD of rank {rank}")
    rest = np.abs(values[rank]) if rank < len(values) else 0.0
    if rest * _MIN_WHITEN_GAP > top[-1]:
        raise NotWhitenableError(f"second_moment is not numerically rank {rank}: eigenvalue {rank} is {top[-1]:.3g}"
                                 f" and eigenvalue {rank + 1} is {rest:.3g} (gap below {_MIN_WHITEN_GAP:g})")
    basis = vectors[:, :rank]
    return Whitening(basis / np.sqrt(top), basis, top, values)
