"""Multilinear algebra on dense symmetric tensors, shared by the decomposers.

numpy has no symmetric-tensor routines, so the contractions are written here by hand; each is one matrix
product against Khatri-Rao columns v ⊗ ... ⊗ v, so p probe vectors cost a single BLAS call.
"""

from __future__ import annotations

import itertools

import numpy as np
import scipy.linalg


def khatri_rao(mats: list[np.ndarray]) -> np.ndarray:
    """Columnwise Kronecker product, first matrix slowest (C order): column j is m0_j ⊗ m1_j ⊗ ...."""
    out = mats[0]
    for mat in mats[1:]:
        out = (out[:, None, :] * mat[None, :, :]).reshape(-1, mat.shape[1])
    return out


def contract_dense(T: np.ndarray, V: np.ndarray) -> np.ndarray:
    """T(I, v_i, ..., v_i) for every column v_i of V: (d,)*m and (d, p) -> (d, p)."""
    return T.reshape(T.shape[0], -1) @ khatri_rao([V] * (T.ndim - 1))


def project_dense(T: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """T(Q, ..., Q); each tensordot contracts the leading mode and appends the new one, so m steps keep order."""
    out = T
    for _ in range(T.ndim):
        out = np.tensordot(out, Q, axes=(0, 0))
    return out


def cp_to_tensor(weights: np.ndarray, factors: np.ndarray, order: int) -> np.ndarray:
    """sum_j lambda_j a_j^{⊗m} as a dense array, via one (d^ceil(m/2) x r)(r x d^floor(m/2)) product."""
    d = factors.shape[0]
    left = khatri_rao([factors] * ((order + 1) // 2)) * weights
    right = khatri_rao([factors] * (order // 2))
    return (left @ right.T).reshape((d,) * order)


def symmetrize(T: np.ndarray) -> np.ndarray:
    """Average of T over all permutations of its axes."""
    perms = list(itertools.permutations(range(T.ndim)))
    return sum(T.transpose(perm) for perm in perms) / len(perms)


def fit_weights(factors: np.ndarray, contracted: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares weights for fixed factors and the fit's right-hand side.

    min ||T - sum_j lambda_j a_j^{⊗m}|| has normal equations (<a_i, a_j>^m) lambda = (T(a_j, ..., a_j)), and
    T(a_j, ..., a_j) = <a_j, T(I, a_j, ..., a_j)>, so `contracted` = T(I, a_j, ..., a_j) is all that is needed.
    """
    gram = (factors.T @ factors) ** order
    rhs = np.einsum("ij,ij->j", factors, contracted)
    return scipy.linalg.lstsq(gram, rhs)[0], rhs


def relative_residual(T: np.ndarray, weights: np.ndarray, factors: np.ndarray) -> float:
    """||T - sum_j lambda_j a_j^{⊗m}|| / ||T|| (the absolute residual when T is zero)."""
    norm = np.linalg.norm(T)
    diff = np.linalg.norm(T - cp_to_tensor(weights, factors, T.ndim))
    return float(diff / norm) if norm > 0 else float(diff)


def normalize_columns(V: np.ndarray) -> np.ndarray:
    """Columns scaled to unit norm; zero columns are left at zero."""
    norms = np.linalg.norm(V, axis=0)
    return V / np.where(norms > 0, norms, 1.0)


def signs_of(values: np.ndarray) -> np.ndarray:
    """sign(values) with 0 mapped to +1."""
    return np.where(values < 0, -1.0, 1.0)


def canonicalize(weights: np.ndarray, factors: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Sort by |lambda| descending and make each factor's largest-|entry| positive.

    lambda a^{⊗m} = (-1)^m lambda (-a)^{⊗m}: the weight flips with the factor for odd m and keeps its sign for
    even m.
    """
    largest = np.argmax(np.abs(factors), axis=0)
    signs = signs_of(factors[largest, np.arange(factors.shape[1])])
    factors = factors * signs
    if order % 2:
        weights = weights * signs
    ranking = np.argsort(-np.abs(weights), kind="stable")
    return weights[ranking], factors[:, ranking]
