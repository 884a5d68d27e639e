"""The Jacobian of a network's outputs in its parameters, J = ∂f(X; θ)/∂θ, and its transpose as matrix-free
operators, on curvlinops' `JacobianLinearOperator` and `TransposedJacobianLinearOperator` (Jv by forward-mode,
Jᵀu by reverse-mode differentiation).

J stacks the outputs of every row of the data: shape (N·C, P) for N rows and C outputs per row (more for outputs
with more axes), row-major per batch, batches in the data's order. It is the J of the Gauss-Newton matrix
G = Jᵀ H_ℓ J (Martens 2020, eq. 10) and of the neural tangent kernel Θ = J Jᵀ (Jacot et al. 2018).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator

from ._curvlinops import copy_at_point
from .operators import FunctionalLoss, ParameterSelection, all_finite

__all__ = ["JacobianOperator", "TransposedJacobianOperator"]


def _with_dummy_targets(data):
    """A bare input array X becomes the batch (X, 0): the Jacobian needs no targets."""
    if isinstance(data, torch.Tensor | np.ndarray):
        return data, np.zeros(len(data))
    return data


class _JacobianBase:
    """Shared by J and Jᵀ: the model at θ, the curvlinops backend, NumPy/torch in and out."""

    def __init__(self, model: torch.nn.Module, data, *, parameters: ParameterSelection = None, at=None,
                 micro_batch_size: int | None = None, check_deterministic: bool = False, _objective=None):
        self.objective = _objective or FunctionalLoss(model, None, _with_dummy_targets(data), parameters=parameters,
                                                      at=at, micro_batch_size=micro_batch_size)
        copy, params = copy_at_point(self.objective)
        self._backend = self._backend_class()(copy, params, self.objective.data,
                                              check_deterministic=check_deterministic)

    @property
    def dtype(self) -> torch.dtype:
        return self.objective.dtype

    @property
    def device(self) -> torch.device:
        return self.objective.device

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self._backend.shape)

    def __matmul__(self, v):
        is_numpy = not isinstance(v, torch.Tensor)
        V = torch.as_tensor(v).to(device=self.device, dtype=self.dtype)
        n_in = self.shape[1]
        if V.ndim not in (1, 2) or V.shape[0] != n_in:
            raise ValueError(f"v must have shape ({n_in},) or ({n_in}, m) for this {self.name}, got {tuple(V.shape)}")
        if not all_finite(V):
            raise ValueError("v contains NaN or inf")
        with torch.enable_grad():
            out = self._backend @ V
        return out.detach().double().cpu().numpy() if is_numpy else out.detach()

    def to_dense(self) -> torch.Tensor:
        """The whole matrix, one product with the identity (small sizes only)."""
        return self @ torch.eye(self.shape[1], dtype=self.dtype, device=self.device)

    def to_scipy(self) -> LinearOperator:
        """A float64 `scipy.sparse.linalg.LinearOperator` with this matrix and its transpose."""
        transposed = self.T

        def matmat(X):
            return self @ np.asarray(X, dtype=np.float64)

        def rmatmat(X):
            return transposed @ np.asarray(X, dtype=np.float64)

        return LinearOperator(self.shape, matvec=matmat, rmatvec=rmatmat, matmat=matmat, rmatmat=rmatmat,
                              dtype=np.float64)


class JacobianOperator(_JacobianBase):
    """J = ∂f(X; θ)/∂θ, (N·C, P), for the model's outputs on every row of `data` (one batch (X, y), a bare X,
    or a re-iterable of batches; targets are not used) at θ (the selected parameters, or `at`). `J @ v` is a
    forward-mode product, `J.T` the transpose. The caller's model is left alone (curvlinops runs on a copy)."""

    name = "Jacobian"

    @staticmethod
    def _backend_class() -> type:
        from curvlinops import JacobianLinearOperator  # here, not at the top: its import is slow and warns

        return JacobianLinearOperator

    @property
    def T(self) -> TransposedJacobianOperator:
        return TransposedJacobianOperator(None, None, _objective=self.objective)


class TransposedJacobianOperator(_JacobianBase):
    """Jᵀ, (P, N·C): `Jᵀ @ u` is one vector-Jacobian product (reverse mode) per batch; same arguments as
    `JacobianOperator`."""

    name = "transposed Jacobian"

    @staticmethod
    def _backend_class() -> type:
        from curvlinops import TransposedJacobianLinearOperator  # here, not at the top: its import is slow

        return TransposedJacobianLinearOperator

    @property
    def T(self) -> JacobianOperator:
        return JacobianOperator(None, None, _objective=self.objective)
