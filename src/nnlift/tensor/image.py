"""The subspace image T(I, Q, ..., Q) of a symmetric operator, and the lift of subspace factors out of it.

A factor b found in the projected tensor T(Q, ..., Q) only spans what the basis Q captured of a_j. The image
P = T(I, Q, ..., Q), of shape (d, r, ..., r), keeps the first mode in full, so from the same pass the factors
can be lifted: for a = Q b, T(I, a, ..., a) = P(I, b, ..., b), and the symmetric ALS update of the first mode
(Kolda & Bader 2009, §3.4) m = Y C^-1 with Y_j = P(I, b_j, ..., b_j) and C = ((B^T B)^{m-1}) gives a_j ∝ m_j.
Its error is quadratic in the subspace error (a tensor power step), so one sketch pass plus one image pass fit
the first layer where the projection alone loses accuracy. T(Q, ..., Q) = Q^T P comes with the image, so the
projection costs no extra pass.

An operator may implement `contract_image(Q)`; any other one is read through `contract` with polarization
probes (sums of basis vectors) from which the multilinear form is recovered exactly.
"""

from __future__ import annotations

import itertools

import numpy as np
import scipy.linalg

from ._multilinear import normalize_columns, signs_of

__all__ = ["subspace_image", "image_dense", "polarization_probes", "from_polarization", "lift_factors",
           "fit_weights_on_image", "image_residual"]


def image_dense(T: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """T(I, Q, ..., Q) of a dense (d,)*m array: shape (d,) + (r,)*(m-1)."""
    out = T
    for _ in range(T.ndim - 1):
        out = np.tensordot(out, Q, axes=(1, 0))
    return out


def _pairs(r: int) -> list[tuple[int, int]]:
    return list(itertools.combinations(range(r), 2))


def polarization_probes(Q: np.ndarray, order: int) -> np.ndarray:
    """Probe columns whose `contract` images determine T(I, Q, ..., Q) exactly (orders 3 and 4).

    Order 3: q_a and q_a + q_b (a < b), r(r+1)/2 probes. Order 4: q_a, q_a + q_b, q_a - q_b (a < b) and
    q_a + q_b + q_c (a < b < c), r + r(r-1) + C(r, 3) probes = the number of distinct entries.
    """
    if order not in (3, 4):
        raise ValueError(f"order must be 3 or 4, got {order}")
    r = Q.shape[1]
    columns = [Q]
    pairs = _pairs(r)
    if pairs:
        first, second = (np.array(index) for index in zip(*pairs, strict=True))
        columns.append(Q[:, first] + Q[:, second])
        if order == 4:
            columns.append(Q[:, first] - Q[:, second])
            triples = np.array(list(itertools.combinations(range(r), 3))).reshape(-1, 3)
            columns.append(Q[:, triples[:, 0]] + Q[:, triples[:, 1]] + Q[:, triples[:, 2]])
    return np.hstack(columns)


def from_polarization(Y: np.ndarray, r: int, order: int) -> np.ndarray:
    """T(I, Q, ..., Q) from the `contract` images Y of `polarization_probes(Q, order)`.

    With f(v) = T(I, v, ..., v): order 3, T(I, a, b) = (f(a + b) - f(a) - f(b)) / 2; order 4,
    T(I, a, a, b) = (f(a + b) - f(a - b) - 2 f(b)) / 6, T(I, a, b, b) = (f(a + b) + f(a - b) - 2 f(a)) / 6 and
    T(I, a, b, c) = (f(a + b + c) - f(a) - f(b) - f(c) - 3 * (the six T(I, x, x, y) of a, b, c)) / 6.
    """
    if order not in (3, 4):
        raise ValueError(f"order must be 3 or 4, got {order}")
    d = Y.shape[0]
    out = np.empty((d,) + (r,) * (order - 1))
    singles = Y[:, :r]
    pairs = _pairs(r)
    plus = Y[:, r:r + len(pairs)]
    if order == 3:
        for a in range(r):
            out[:, a, a] = singles[:, a]
        for i, (a, b) in enumerate(pairs):
            out[:, a, b] = out[:, b, a] = (plus[:, i] - singles[:, a] - singles[:, b]) / 2
        return out
    minus = Y[:, r + len(pairs):r + 2 * len(pairs)]
    triples = Y[:, r + 2 * len(pairs):]
    for a in range(r):
        out[:, a, a, a] = singles[:, a]
    for i, (a, b) in enumerate(pairs):
        aab = (plus[:, i] - minus[:, i] - 2 * singles[:, b]) / 6
        abb = (plus[:, i] + minus[:, i] - 2 * singles[:, a]) / 6
        for index in set(itertools.permutations((a, a, b))):
            out[(slice(None),) + index] = aab
        for index in set(itertools.permutations((a, b, b))):
            out[(slice(None),) + index] = abb
    for i, (a, b, c) in enumerate(itertools.combinations(range(r), 3)):
        mixed = sum(out[:, x, x, y] for x, y in itertools.permutations((a, b, c), 2))
        abc = (triples[:, i] - singles[:, a] - singles[:, b] - singles[:, c] - 3 * mixed) / 6
        for index in itertools.permutations((a, b, c)):
            out[(slice(None),) + index] = abc
    return out


def subspace_image(op, Q: np.ndarray) -> np.ndarray:
    """T(I, Q, ..., Q), shape (d,) + (r,)*(m-1): the operator's `contract_image` if it has one, else one
    `contract` call on the polarization probes."""
    if hasattr(op, "contract_image"):
        return np.asarray(op.contract_image(Q), dtype=np.float64)
    return from_polarization(op.contract(polarization_probes(Q, op.order)), Q.shape[1], op.order)


_TAIL = {3: "dab,aj,bj->dj", 4: "dabc,aj,bj,cj->dj"}


def _contract_tail(image: np.ndarray, B: np.ndarray) -> np.ndarray:
    """P(I, b_j, ..., b_j) per column b_j of B: (d, k)."""
    return np.einsum(_TAIL[image.ndim], image, *[B] * (image.ndim - 1), optimize=True)


def lift_factors(image: np.ndarray, Q: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """Unit factors a_j in R^d from the image and the subspace factors b_j (columns of `coefficients`).

    One symmetric ALS update of the first mode with the other modes held at Q b_j (see the module docstring);
    each a_j takes the sign of Q b_j.
    """
    order = image.ndim
    Y = _contract_tail(image, coefficients)
    cross = (coefficients.T @ coefficients) ** (order - 1)
    update = scipy.linalg.lstsq(cross, Y.T)[0].T
    return normalize_columns(update * signs_of(np.einsum("ij,ij->j", update, Q @ coefficients)))


def _normal_equations(image: np.ndarray, Q: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gram matrix and right-hand side of the least-squares fit P ≈ sum_j lambda_j a_j ⊗ c_j^{⊗(m-1)}, c_j = Q^T a_j,
    without forming the (d r^(m-1), k) design: <a_i ⊗ c_i.., a_j ⊗ c_j..> = <a_i, a_j> <c_i, c_j>^(m-1) and
    <P, a_j ⊗ c_j..> = <a_j, P(I, c_j, ..., c_j)>."""
    captured = Q.T @ factors
    gram = (factors.T @ factors) * (captured.T @ captured) ** (image.ndim - 1)
    rhs = np.einsum("dj,dj->j", factors, _contract_tail(image, captured))
    return gram, rhs


def fit_weights_on_image(image: np.ndarray, Q: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Least-squares weights of P = T(I, Q, ..., Q) ≈ sum_j lambda_j a_j ⊗ (Q^T a_j)^{⊗(m-1)}, factors fixed."""
    gram, rhs = _normal_equations(image, Q, factors)
    return scipy.linalg.lstsq(gram, rhs)[0]


_MODEL = {3: "dj,aj,bj,j->dab", 4: "dj,aj,bj,cj,j->dabc"}


def image_residual(image: np.ndarray, Q: np.ndarray, weights: np.ndarray, factors: np.ndarray) -> float:
    """||P - sum_j lambda_j a_j ⊗ (Q^T a_j)^{⊗(m-1)}|| / ||P||; the model is an array of the image's size."""
    captured = Q.T @ factors
    model = np.einsum(_MODEL[image.ndim], factors, *[captured] * (image.ndim - 1), weights, optimize=True)
    return float(np.linalg.norm(image - model) / np.linalg.norm(image))
