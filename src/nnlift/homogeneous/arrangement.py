"""The exact polar of one-hidden-layer ReLU units for small input dimension, by enumerating activation patterns.

For a unit u ↦ relu(X u) vᵀ with θ = ||u|| ||v||, the polar is Ω°(Z) = max_{||u|| = 1} f(u), f(u) = ||Zᵀ relu(X u)||
(Haeffele & Vidal 2015, the polar characterisation). The rows of X cut Rᵈ by the hyperplanes x_jᵀu = 0 into the
cells of a central hyperplane arrangement, and on each cell relu(X u) = D X u for a fixed pattern D: the patterns
the exact convex program of Pilanci & Ergen (2020, ICML, Thm. 1) ranges over. The arrangement has at most
2 Σ_{k<d} C(n-1, k) cells (Cover 1965), so enumerating them is practical for small d.

The maximiser u* lies in the relative interior of one face F of the arrangement (a cell of the arrangement
restricted to a flat L, an intersection of hyperplanes). There f² = uᵀ A_D u with A_D = Xᵀ D Z Zᵀ D X, and u* is a
local maximum of it on the sphere of L: an eigenvector of A_D compressed to L. So the maximum of f over the
eigenvectors of every (flat, cell) pair is Ω°(Z) exactly: every candidate is a unit vector (f there is a lower
bound, whatever the enumeration) and the true maximiser is one of them. Cells are found from the arrangement's
vertices (rays, the intersections of d - 1 independent hyperplanes): the cells around a ray v are the fixed signs
sign(x_jᵀv) of the rows off v times the cells of the (d-1)-dimensional arrangement of the rows through v, projected
to v's orthogonal complement; every cell of an essential arrangement has such a ray in its closure.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import combinations
from math import comb

import numpy as np

from .relu2d import activation_arcs

__all__ = ["activation_patterns", "pattern_count_bound", "relu_polar_enumerated"]

_ON = 1e-9          # |a_jᵀv| <= _ON (unit normal a_j, unit v): the hyperplane goes through v


def pattern_count_bound(n: int, d: int) -> int:
    """Cover's bound 2 Σ_{k<d} C(n-1, k) on the cells of a central arrangement of n hyperplanes in Rᵈ."""
    if n == 0 or d == 0:
        return 1
    return 2 * sum(comb(n - 1, k) for k in range(min(d, n)))


def activation_patterns(X) -> np.ndarray:
    """(K, n) boolean patterns 1[X u > 0], one per open cell of the arrangement of X's rows (K <= the bound of
    `pattern_count_bound`; near-degenerate vertices may add patterns of lower-dimensional faces, never lose one)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be (n, d), got shape {X.shape}")
    Q = _row_space(X)
    if Q.shape[1] == 0:
        return np.zeros((1, X.shape[0]), dtype=bool)
    return _patterns(X @ Q)


def relu_polar_enumerated(X, Z) -> tuple[float, np.ndarray, np.ndarray]:
    """(Ω°(Z), u*, v*): max over unit u, v of <Z, relu(X u) vᵀ> for X (n, d), Z (n, m), exactly (up to rounding)."""
    X, Z = np.asarray(X, dtype=np.float64), np.asarray(Z, dtype=np.float64)
    if Z.ndim == 1:
        Z = Z[:, None]
    if X.ndim != 2 or Z.ndim != 2 or Z.shape[0] != X.shape[0]:
        raise ValueError(f"X (n, d) and Z (n, m) must have the same rows, got {X.shape} and {Z.shape}")
    if not (np.isfinite(X).all() and np.isfinite(Z).all()):
        raise ValueError("X and Z must be finite")
    candidates = _candidates(X, Z)
    values = np.linalg.norm(Z.T @ np.maximum(X @ candidates, 0.0), axis=0)
    k = int(np.argmax(values))
    u = candidates[:, k]
    w = Z.T @ np.maximum(X @ u, 0.0)
    return float(values[k]), u, (w / values[k] if values[k] > 0 else w)


def _row_space(X: np.ndarray) -> np.ndarray:
    """An orthonormal basis (d, r) of the span of X's rows (f depends on u only through its projection there)."""
    _, s, Vt = np.linalg.svd(X, full_matrices=False)
    rank = int(np.sum(s > 1e-12 * max(s[0], 1e-300))) if s.size else 0
    return Vt[:rank].T


def _complement(v: np.ndarray) -> np.ndarray:
    """An orthonormal basis (d, d-1) of the orthogonal complement of the unit vector v."""
    return np.linalg.svd(v[None, :])[2][1:].T


def _normals(X: np.ndarray) -> np.ndarray:
    """The distinct hyperplanes x_jᵀu = 0 as unit normals (h, d), one per hyperplane (x and -x coincide)."""
    norms = np.linalg.norm(X, axis=1)
    A = X[norms > 0] / norms[norms > 0, None]
    A = A * np.where(A[np.arange(len(A)), np.argmax(np.abs(A) > 1e-12, axis=1)] < 0, -1.0, 1.0)[:, None]
    return np.unique(np.round(A, 12), axis=0) if len(A) else A


def _patterns(X: np.ndarray) -> np.ndarray:
    """Cell patterns of the arrangement of X's rows, X (n, d) of full column rank d (zero rows allowed)."""
    n, d = X.shape
    if d == 1:
        return np.array([X[:, 0] > 0, X[:, 0] < 0])
    if d == 2:
        return _unique_rows(np.array([p for *_, p in activation_arcs(X)]))
    norms = np.linalg.norm(X, axis=1)
    unit = X / np.where(norms > 0, norms, 1.0)[:, None]
    normals = _normals(X)
    subsets = np.array(list(combinations(range(len(normals)), d - 1)), dtype=np.int64).reshape(-1, d - 1)
    _, s, Vt = np.linalg.svd(normals[subsets])
    rays = Vt[s[:, -1] > 1e-9, -1]
    rays = np.concatenate([rays, -rays])                          # the arrangement's vertices on the sphere
    dots = unit @ rays.T
    through = np.abs(dots) <= _ON
    positive = dots > _ON
    generic = through.sum(axis=0) == d - 1
    signs = np.array(list(np.ndindex(*(2,) * (d - 1))), dtype=bool)          # (2^{d-1}, d-1)
    rows = np.nonzero(through[:, generic].T)[1].reshape(-1, d - 1)           # the d-1 rows through each ray
    block = np.repeat(positive[:, generic].T[:, None], len(signs), axis=1)  # (rays, 2^{d-1}, n)
    block[np.arange(len(rows))[:, None, None], np.arange(len(signs))[None, :, None], rows[:, None, :]] = signs
    found = [block.reshape(-1, n)]
    for k in np.nonzero(~generic)[0]:                             # several hyperplanes through one ray: recurse
        sub = _patterns_any_rank(X[through[:, k]] @ _complement(rays[k]))
        local = np.repeat(positive[:, k][None], len(sub), axis=0)
        local[:, through[:, k]] = sub
        found.append(local)
    return _unique_rows(np.concatenate(found))


def _unique_rows(P: np.ndarray) -> np.ndarray:
    """The distinct rows of a boolean matrix (hashing the packed rows: faster than np.unique(axis=0))."""
    packed = np.ascontiguousarray(np.packbits(P, axis=1))
    _, index = np.unique(packed.view(f"V{packed.shape[1]}").ravel(), return_index=True)
    return P[np.sort(index)]


def _patterns_any_rank(X: np.ndarray) -> np.ndarray:
    """`_patterns` after reducing X to its row space (the rows through a vertex need not span its complement)."""
    Q = _row_space(X)
    if Q.shape[1] == 0:
        return np.zeros((1, X.shape[0]), dtype=bool)
    return _patterns(X @ Q)


def _candidates(X: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """Unit vectors (d, K) among which f attains its maximum: ± the eigenvectors of A_D compressed to each flat,
    for every cell D of the arrangement restricted to that flat, and the arrangement's rays."""
    faces, rays = _faces(X.tobytes(), X.shape)
    found = [rays, -rays]
    for B, D in faces:
        M = np.einsum("nm,kn,nd->kmd", Z, D.astype(np.float64), X @ B)        # Zᵀ D X B for every cell
        _, vectors = np.linalg.eigh(np.einsum("kmd,kme->kde", M, M))
        inner = B @ vectors.transpose(1, 0, 2).reshape(B.shape[1], -1)
        found += [inner, -inner]
    return np.concatenate(found, axis=1)


@lru_cache(maxsize=16)
def _faces(data: bytes, shape: tuple[int, int]) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """The arrangement of X's rows (given as bytes, to cache it: it does not depend on Z) as ([(B, patterns)] for
    every flat of dimension >= 2 with an orthonormal basis B (d, k), and the rays (d, R) of the 1-D flats)."""
    X = np.frombuffer(data, dtype=np.float64).reshape(shape)
    return _flats(X)


def _flats(X: np.ndarray) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """`_faces` without the cache: the whole space's cells, then recursively each hyperplane's flats."""
    d = X.shape[1]
    Q = _row_space(X)
    if Q.shape[1] == 0:
        return [], np.eye(d)[:, :1]
    if Q.shape[1] < d:
        faces, rays = _flats(X @ Q)
        return [(Q @ B, D) for B, D in faces], Q @ rays
    if d == 1:
        return [], np.array([[1.0]])
    normals = _normals(X)
    faces = [(np.eye(d), _patterns(X))]
    if d == 2:                                                    # the 1-D flats are the lines a⊥
        return faces, (normals[:, ::-1] * np.array([-1.0, 1.0])).T
    rays = []
    norms = np.linalg.norm(X, axis=1)
    for a in normals:
        B = _complement(a)
        local = X @ B
        local[np.linalg.norm(local, axis=1) <= _ON * norms] = 0.0   # rows parallel to a vanish on its hyperplane
        sub_faces, sub_rays = _flats(local)
        faces += [(B @ Bs, D) for Bs, D in sub_faces]
        rays.append(B @ sub_rays)
    return faces, np.concatenate(rays, axis=1)
