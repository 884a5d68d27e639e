"""Damped inverses (A + λI)⁻¹ of any nnlift operator by matrix-free solvers, on curvlinops' inverse operators.

The solvers are curvlinops' (`CGInverseLinearOperator`: GPyTorch's batched conjugate gradients;
`LSMRInverseLinearOperator`: SciPy's LSMR, Fong & Saunders 2011; `NeumannInverseLinearOperator`: the truncated
series α Σ_{k=0}^{K} (I − αA)^k, Lorraine et al. 2020); nnlift adds the damping, a check that CG and LSMR reached
their tolerance (GPyTorch's CG stops on the mean residual over the columns and only warns at its iteration cap;
LSMR reports its cap in a flag), a default Neumann scale from the extreme eigenvalues, and the residuals of a solve.
"""

from __future__ import annotations

import math
import numbers
import warnings

import torch

from ._curvlinops import as_curvlinops
from .operators import SymmetricOperator

__all__ = ["InverseOperator"]

_METHODS = ("cg", "lsmr", "neumann")
_REFINEMENTS = 3  # CG re-solves for the residual at most this often before it reports a failure
_NEUMANN_TOL = 1e-6  # the Lanczos tolerance of the Neumann scale's two ends; a λ_min(A + λI) below it times λ_max
# is not resolved from 0 (ARPACK found 1e-6 instead of the zero eigenvalue of a rank-deficient Gauss-Newton matrix)


class _OfOperator(SymmetricOperator):
    """An operator built on another, `op`, with its shape, dtype and device."""

    op: SymmetricOperator

    @property
    def shape(self) -> tuple[int, int]:
        return self.op.shape

    @property
    def dtype(self) -> torch.dtype:
        return self.op.dtype

    @property
    def device(self) -> torch.device:
        return self.op.device


class InverseOperator(_OfOperator):
    """(A + `damping`·I)⁻¹ for a symmetric nnlift operator A (Hessian, Gauss-Newton, Fisher, K-FAC, ...), applied
    by a matrix-free solver; `inverse @ b` solves (A + λI) x = b column by column.

    `method`: "cg" (conjugate gradients, default; A + λI must be positive definite: a Gauss-Newton or Fisher
    matrix with λ > 0, or a Hessian damped past its most negative eigenvalue), "lsmr" (least squares, also for
    indefinite or singular A + λI, where it returns the minimum-norm least-squares solution) or "neumann"
    (num_terms + 1 terms of the series; it converges when A + λI is positive definite with eigenvalues below
    2/`scale`, and `scale` defaults to 1/λ_max(A + λI) after checking by Lanczos that λ_min(A + λI) > 1e-6 λ_max,
    the resolution of its tolerance).
    `tol` (default 1e-8 in float64, else the larger of 1e-5 and 10 eps; at least 10 eps of the operator's dtype,
    the floor of a residual computed in it): every CG column must end with ‖(A + λI)x − b‖ <= tol·‖b‖ (checked with one
    more product per column, refined by re-solving for the residual up to 3 times; a RuntimeError says when it
    still did not); LSMR stops
    at ‖r‖ <= tol(‖b‖ + ‖A + λI‖‖x‖) or, for an inconsistent system, ‖(A + λI)r‖ <= tol‖A + λI‖‖r‖ (its atol =
    btol = tol), and a RuntimeError says when it hit `max_iter` instead. `max_iter` caps CG's and LSMR's
    iterations (default 10·P: in floating point both lose orthogonality and can need more than P on
    ill-conditioned systems). The Neumann series has no stopping test: `residuals(b)` checks a solve.
    """

    def __init__(self, op: SymmetricOperator, damping: float = 0.0, *, method: str = "cg", tol: float | None = None,
                 max_iter: int | None = None, num_terms: int | None = None, scale: float | None = None):
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
        if not (_is_real(damping) and math.isfinite(damping) and damping >= 0):
            raise ValueError(f"damping must be a finite number >= 0, got {damping!r}")
        floor = 10 * torch.finfo(op.dtype).eps
        tol = (1e-8 if op.dtype == torch.float64 else max(1e-5, floor)) if tol is None else tol
        if not (_is_real(tol) and 0 < tol < 1):
            raise ValueError(f"tol must be a relative residual in (0, 1), got {tol!r}")
        if tol < floor:
            raise ValueError(f"tol={tol:g} is below 10 eps of the operator's {op.dtype} ({floor:.2g}), which its "
                             "residuals cannot reach; raise tol or use a float64 model")
        P = op.shape[0]
        max_iter = 10 * P if max_iter is None else max_iter
        if not _is_count(max_iter):
            raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
        max_iter = int(max_iter)
        self.op, self.damping, self.method, self.tol = op, float(damping), method, float(tol)
        self.name = f"({op.name} + {self.damping:g} I)⁻¹ by {method}"
        shifted = as_curvlinops(op, self.damping)
        if method != "neumann" and (num_terms is not None or scale is not None):
            raise ValueError(f"num_terms and scale belong to method='neumann', not {method!r}")
        if method == "cg":
            self._backend = CGInverseLinearOperator(shifted, tolerance=self.tol, max_iter=max_iter,
                                                    max_tridiag_iter=min(max_iter, 20), eps=1e-30,
                                                    stop_updating_after=0.0)
        elif method == "lsmr":
            self._backend = LSMRInverseLinearOperator(shifted, atol=self.tol, btol=self.tol, maxiter=max_iter)
        else:
            num_terms = 100 if num_terms is None else num_terms
            if not _is_count(num_terms):
                raise ValueError(f"num_terms must be a positive integer, got {num_terms!r}")
            num_terms = int(num_terms)
            self.scale = self._neumann_scale() if scale is None else float(scale)
            if not (math.isfinite(self.scale) and self.scale > 0):
                raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
            self._backend = NeumannInverseLinearOperator(shifted, num_terms=num_terms, scale=self.scale)

    def _neumann_scale(self) -> float:
        """1/λ_max(A + λI), after checking λ_min(A + λI) > 0: the series then converges. Both ends are taken of
        A + λI itself: Lanczos' relative tolerance cannot be met at an eigenvalue of A near 0 (a rank-deficient
        Gauss-Newton matrix), but A + λI's are at least λ; at λ = 0 such an A is refused."""
        from .spectrum import lanczos

        shifted = _Shifted(self.op, self.damping)
        top = float(lanczos(shifted, k=1, which="LA", tol=_NEUMANN_TOL).values[0])
        try:
            bottom = float(lanczos(shifted, k=1, which="SA", tol=_NEUMANN_TOL).values[0])
        except RuntimeError as error:
            raise ValueError(f"A + {self.damping:g} I has an eigenvalue too close to 0 for Lanczos to resolve ({error})"
                             ": it is singular or nearly so, and the Neumann series cannot converge; add damping or "
                             "use method='lsmr'") from error
        if not bottom > _NEUMANN_TOL * top:
            raise ValueError(f"A + {self.damping:g} I is not positive definite, or nearly singular (eigenvalues from "
                             f"{bottom:.3g} to {top:.3g}; the series needs about {top:.3g}/λ_min terms): the Neumann "
                             "series cannot converge; use method='lsmr' or more damping")
        return 1.0 / top

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        if self.method == "cg" and not bool((torch.linalg.vector_norm(V, dim=0) > 0).all()):
            raise ValueError("b has a zero column: solve the others (its solution is 0)")
        with warnings.catch_warnings():  # GPyTorch warns at its iteration cap; the check below says more
            warnings.simplefilter("ignore")
            out = self._backend @ V
        if not torch.isfinite(out).all():
            raise FloatingPointError(f"{self.name} produced NaN or inf: A + λI is not positive definite enough for "
                                     f"{self.method}; add damping or use method='lsmr'")
        if self.method == "cg":
            out = self._refine(V, out)
        elif self.method == "lsmr" and any(info[0] == 7 for info in self._backend._lsmr_info):
            raise RuntimeError(f"LSMR hit max_iter before tol = {self.tol:g}: raise max_iter or tol")
        return out

    def _refine(self, B: torch.Tensor, X: torch.Tensor, rounds: int = _REFINEMENTS) -> torch.Tensor:
        """Iterative refinement of a CG solve until every column's relative residual is <= tol: CG stops on the
        mean residual over the columns, so a column can end above it; each round solves for the residual and
        costs one product per column to check."""
        for _ in range(rounds):
            R = B - (self.op @ X + self.damping * X)
            worst = float((torch.linalg.vector_norm(R, dim=0) / torch.linalg.vector_norm(B, dim=0)).max())
            if worst <= self.tol:
                return X
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                X = X + self._backend @ R
        raise RuntimeError(f"CG stopped at a relative residual {worst:.3g} > tol = {self.tol:g}: raise max_iter or "
                           "tol, add damping (A + λI must be positive definite), or use method='lsmr'")

    def _relative_residuals(self, B: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        norms = torch.linalg.vector_norm(B, dim=0)
        if not bool((norms > 0).all()):
            raise ValueError("b has a zero column: its solution is 0 and it has no relative residual")
        return torch.linalg.vector_norm(self.op @ X + self.damping * X - B, dim=0) / norms

    def residuals(self, b):
        """‖(A + λI)x − b‖/‖b‖ per column of `b` (P,) or (P, m), no zero column, for x = self @ b (one solve, one
        product)."""
        B = torch.as_tensor(b).to(device=self.device, dtype=self.dtype)
        B = B if B.ndim == 2 else B[:, None]
        return self._relative_residuals(B, self @ B).double().cpu().numpy()


class _Shifted(_OfOperator):
    """A + λI for a symmetric nnlift operator A."""

    def __init__(self, op: SymmetricOperator, damping: float):
        self.op, self.damping, self.name = op, damping, f"{op.name} + {damping:g} I"

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self.op @ V + self.damping * V


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_count(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1
