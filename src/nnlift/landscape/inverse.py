"""Damped inverses (A + λI)⁻¹ of any nnlift operator by matrix-free solvers, on curvlinops' inverse operators.

The solvers are curvlinops' (`CGInverseLinearOperator`: GPyTorch's batched conjugate gradients;
`LSMRInverseLinearOperator`: SciPy's LSMR, Fong & Saunders 2011; `NeumannInverseLinearOperator`: the truncated
series α Σ_{k<K} (I − αA)^k, Lorraine et al. 2020); nnlift adds the damping, tolerances that mean the same for every
method (a relative residual), a default Neumann scale from the top eigenvalue, and the residuals of a solve.
"""

from __future__ import annotations

import math

import torch

from ._curvlinops import as_curvlinops
from .operators import SymmetricOperator

__all__ = ["InverseOperator"]

_METHODS = ("cg", "lsmr", "neumann")


class InverseOperator(SymmetricOperator):
    """(A + `damping`·I)⁻¹ for a symmetric nnlift operator A (Hessian, Gauss-Newton, Fisher, K-FAC, ...), applied
    by a matrix-free solver; `inverse @ b` solves (A + λI) x = b column by column.

    `method`: "cg" (conjugate gradients, default; A + λI must be positive definite: a Gauss-Newton or Fisher
    matrix with λ > 0, or a Hessian damped past its most negative eigenvalue), "lsmr" (least squares, also for
    indefinite or singular A + λI, where it returns the minimum-norm least-squares solution) or "neumann"
    (A + λI positive definite with eigenvalues below 2/`scale`; `scale` defaults to 1/λ_max(A + λI) from Lanczos,
    `num_terms` terms). `tol`: CG stops at the relative residual ‖(A + λI)x − b‖/‖b‖ <= tol, LSMR at
    ‖r‖ <= tol(‖b‖ + ‖A + λI‖‖x‖) or, for an inconsistent system, ‖(A + λI)r‖ <= tol‖A + λI‖‖r‖ (its atol = btol
    = tol). `max_iter` caps their iterations (default 10·P: in floating point both lose orthogonality and can need
    more than P on ill-conditioned systems). `residuals(b)` checks a solve.
    """

    def __init__(self, op: SymmetricOperator, damping: float = 0.0, *, method: str = "cg", tol: float = 1e-8,
                 max_iter: int | None = None, num_terms: int = 100, scale: float | None = None):
        from curvlinops import (  # here, not at the top: its import is slow and warns
            CGInverseLinearOperator,
            LSMRInverseLinearOperator,
            NeumannInverseLinearOperator,
        )

        if not isinstance(op, SymmetricOperator):
            raise TypeError("op must be an nnlift operator (Hessian, Gauss-Newton, K-FAC, ...), got "
                            f"{type(op).__name__}")
        if method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
        if not (isinstance(damping, int | float) and math.isfinite(damping) and damping >= 0):
            raise ValueError(f"damping must be a finite number >= 0, got {damping!r}")
        if not (isinstance(tol, int | float) and 0 < tol < 1):
            raise ValueError(f"tol must be a relative residual in (0, 1), got {tol!r}")
        P = op.shape[0]
        max_iter = 10 * P if max_iter is None else max_iter
        if not (isinstance(max_iter, int) and max_iter >= 1):
            raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
        self.op, self.damping, self.method, self.tol = op, float(damping), method, float(tol)
        self.name = f"({op.name} + {self.damping:g} I)⁻¹ by {method}"
        shifted = as_curvlinops(op, self.damping)
        if method == "cg":
            self._backend = CGInverseLinearOperator(shifted, tolerance=self.tol, max_iter=max_iter,
                                                    eps=1e-30, stop_updating_after=0.0)
        elif method == "lsmr":
            self._backend = LSMRInverseLinearOperator(shifted, atol=self.tol, btol=self.tol, maxiter=max_iter)
        else:
            if not (isinstance(num_terms, int) and num_terms >= 1):
                raise ValueError(f"num_terms must be a positive integer, got {num_terms!r}")
            self.scale = self._neumann_scale() if scale is None else float(scale)
            if not (math.isfinite(self.scale) and self.scale > 0):
                raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
            self._backend = NeumannInverseLinearOperator(shifted, num_terms=num_terms, scale=self.scale)

    def _neumann_scale(self) -> float:
        """1/λ_max(A + λI): the series then converges when A + λI is positive definite."""
        from .spectrum import lanczos

        top = float(lanczos(self.op, k=1, which="LA", tol=1e-6).values[0]) + self.damping
        if not top > 0:
            raise ValueError(f"A + {self.damping:g} I has no positive eigenvalue (largest {top:.3g}): the Neumann "
                             "series cannot converge; use method='lsmr' or more damping")
        return 1.0 / top

    @property
    def shape(self) -> tuple[int, int]:
        return self.op.shape

    @property
    def dtype(self) -> torch.dtype:
        return self.op.dtype

    @property
    def device(self) -> torch.device:
        return self.op.device

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        out = self._backend @ V
        if not torch.isfinite(out).all():
            raise FloatingPointError(f"{self.name} produced NaN or inf: A + λI is not positive definite enough for "
                                     f"{self.method}; add damping or use method='lsmr'")
        return out

    def residuals(self, b):
        """‖(A + λI)x − b‖/‖b‖ per column of `b` (P,) or (P, m) for x = self @ b (one solve, one product)."""
        B = torch.as_tensor(b).to(device=self.device, dtype=self.dtype)
        B = B if B.ndim == 2 else B[:, None]
        X = self @ B
        R = self.op @ X + self.damping * X - B
        return (torch.linalg.vector_norm(R, dim=0) / torch.linalg.vector_norm(B, dim=0)).double().cpu().numpy()
