"""Test helpers written independently of nnlift.tensor: tensors, contractions and matching by plain einsum."""

from __future__ import annotations

import itertools

import numpy as np
from scipy.optimize import linear_sum_assignment

_LETTERS = "ijkl"


def random_components(rng, d: int, k: int, orthogonal: bool) -> tuple[np.ndarray, np.ndarray]:
    """Weights with |lambda| in [1, 3] and random signs, unit factors (orthonormal or independent Gaussian)."""
    if orthogonal:
        factors = np.linalg.qr(rng.standard_normal((d, k)))[0]
    else:
        factors = rng.standard_normal((d, k))
        factors /= np.linalg.norm(factors, axis=0)
    weights = rng.uniform(1.0, 3.0, k) * rng.choice([-1.0, 1.0], k)
    return weights, factors


def low_rank_tensor(weights, factors, order: int) -> np.ndarray:
    """sum_j lambda_j a_j^{⊗m} by einsum."""
    spec = "r," + ",".join(f"{c}r" for c in _LETTERS[:order]) + "->" + _LETTERS[:order]
    return np.einsum(spec, weights, *([factors] * order), optimize=True)


def symmetric_noise(rng, d: int, order: int, norm: float) -> np.ndarray:
    """A symmetric Gaussian tensor (mean over axis permutations) scaled to Frobenius norm `norm`."""
    G = rng.standard_normal((d,) * order)
    perms = list(itertools.permutations(range(order)))
    G = sum(G.transpose(p) for p in perms) / len(perms)
    return G * (norm / np.linalg.norm(G))


def einsum_contract(T, V):
    """T(I, v_i, ..., v_i) per column by einsum."""
    order = T.ndim
    spec = "i" + _LETTERS[1:order] + "," + ",".join(f"{c}p" for c in _LETTERS[1:order]) + "->ip"
    return np.einsum(spec, T, *([V] * (order - 1)), optimize=True)


def einsum_project(T, Q):
    """T(Q, ..., Q) by einsum."""
    order = T.ndim
    out = "abcd"[:order]
    spec = _LETTERS[:order] + "," + ",".join(f"{c}{o}" for c, o in zip(_LETTERS, out, strict=False)) + "->" + out
    return np.einsum(spec, T, *([Q] * order), optimize=True)


class CountingOperator:
    """A symmetric operator over a dense array it keeps to itself (a closure), counting every call."""

    def __init__(self, T):
        self.dim, self.order = T.shape[0], T.ndim
        self.contract_calls = 0
        self.project_calls = 0
        self._contract = lambda V: einsum_contract(T, V)
        self._project = lambda Q: einsum_project(T, Q)

    @property
    def calls(self) -> int:
        return self.contract_calls + self.project_calls

    def contract(self, V):
        self.contract_calls += 1
        return self._contract(V)

    def project(self, Q):
        self.project_calls += 1
        return self._project(Q)


def match_errors(weights, factors, true_weights, true_factors, order: int) -> tuple[float, float]:
    """(max factor error, max weight error) after Hungarian matching on |cos|, each factor's sign aligned.

    A factor flipped to -a carries weight (-1)^m lambda, so the weight is compared after the same flip.
    """
    cos = factors.T @ true_factors
    rows, cols = linear_sum_assignment(-np.abs(cos))
    signs = np.sign(cos[rows, cols])
    factor_err = np.linalg.norm(factors[:, rows] * signs - true_factors[:, cols], axis=0).max()
    weight_err = np.abs(weights[rows] * signs**order - true_weights[cols]).max()
    return float(factor_err), float(weight_err)
