"""The symmetric operator protocol the decomposers consume, and its dense implementation.

An operator stands for a symmetric tensor T of order m in d dimensions that is never formed: it answers
`contract(V)` = [T(I, v_i, ..., v_i)]_i and `project(Q)` = T(Q, ..., Q), and optionally `contract_image(Q)` =
T(I, Q, ..., Q) (otherwise read through `contract`, see `nnlift.tensor.image`). For a data-side moment each call is
one pass over the rows, which is why the decomposers count and batch them.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ._multilinear import contract_dense, project_dense
from .image import image_dense

__all__ = ["SymmetricOperator", "DenseSymmetricTensor", "as_operator"]

_ORDERS = (3, 4)


@runtime_checkable
class SymmetricOperator(Protocol):
    """A symmetric tensor of order `order` (3 or 4) in `dim` dimensions, seen through two calls."""

    dim: int
    order: int

    def contract(self, V: np.ndarray) -> np.ndarray:
        """V (d, p) -> (d, p); column i is T(I, v_i, ..., v_i) with m - 1 copies of v_i."""
        ...

    def project(self, Q: np.ndarray) -> np.ndarray:
        """Q (d, k) -> the dense (k,)*m array T(Q, ..., Q)."""
        ...


class DenseSymmetricTensor:
    """A dense symmetric array of shape (d,)*m, m in {3, 4}, as a `SymmetricOperator`.

    Symmetry is checked against the adjacent axis swaps (they generate all permutations) with relative
    tolerance `rtol` of the largest entry.
    """

    def __init__(self, array, *, rtol: float = 1e-8):
        try:
            T = np.asarray(array, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"expected a dense numeric array or a SymmetricOperator, got {type(array).__name__}"
                            ) from exc
        if T.ndim not in _ORDERS or T.shape[0] == 0 or any(n != T.shape[0] for n in T.shape):
            raise ValueError(f"a dense symmetric tensor must have shape (d, d, d) or (d, d, d, d) with d >= 1, "
                             f"got shape {T.shape}")
        if not np.all(np.isfinite(T)):
            raise ValueError("the tensor contains NaN or inf; remove the non-finite entries before decomposing")
        scale = np.max(np.abs(T))
        asymmetry = max(np.max(np.abs(T - T.swapaxes(i, i + 1))) for i in range(T.ndim - 1))
        if asymmetry > rtol * scale:
            raise ValueError(f"the tensor is not symmetric: an axis swap changes it by {asymmetry:.3g} (largest "
                             f"entry {scale:.3g}); symmetrise it first by averaging over all axis permutations")
        self.array = T
        self.dim = T.shape[0]
        self.order = T.ndim

    def contract(self, V: np.ndarray) -> np.ndarray:
        return contract_dense(self.array, _check_matrix(V, self.dim, "contract"))

    def project(self, Q: np.ndarray) -> np.ndarray:
        return project_dense(self.array, _check_matrix(Q, self.dim, "project"))

    def contract_image(self, Q: np.ndarray) -> np.ndarray:
        """T(I, Q, ..., Q): shape (d,) + (k,)*(m-1)."""
        return image_dense(self.array, _check_matrix(Q, self.dim, "contract_image"))


def as_operator(T) -> SymmetricOperator:
    """An object with dim/order/contract/project is returned as is; anything else is read as a dense array."""
    if not all(hasattr(T, name) for name in ("dim", "order", "contract", "project")):
        return DenseSymmetricTensor(T)
    if T.order not in _ORDERS:
        raise ValueError(f"only symmetric tensors of order 3 or 4 can be decomposed, the operator has order "
                         f"{T.order!r}")
    if not isinstance(T.dim, int | np.integer) or T.dim < 1:
        raise ValueError(f"the operator's dim must be a positive integer, got {T.dim!r}")
    return T


def _check_matrix(V, dim: int, name: str) -> np.ndarray:
    V = np.asarray(V, dtype=np.float64)
    if V.ndim != 2 or V.shape[0] != dim:
        raise ValueError(f"{name} takes a ({dim}, p) matrix of column vectors, got shape {V.shape}")
    return V
