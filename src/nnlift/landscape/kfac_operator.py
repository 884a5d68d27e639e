"""Kronecker-factored curvature of a network's loss (K-FAC, EKFAC) and its damped inverses as nnlift operators,
built on curvlinops.

K-FAC (Martens & Grosse 2015, §3; Grosse & Martens 2016 for convolutions) replaces the block of the Fisher/GGN of
L for the weights W̄ = [W, b] of each `nn.Linear` (or `nn.Conv2d`) layer by A ⊗ G acting on vec(W̄) (columns
stacked): A = (1/N) Σ_n ā_n ā_nᵀ over the layer's inputs ā = (a, 1), G = (κ/N) Σ_n E[g_n g_nᵀ] over the gradients
g_n of example n's negative log-likelihood in the layer's output, κ = 1/C for `mse_loss` on C outputs (it also
averages over them) and 1 for cross-entropy. Blocks of different layers are zero. EKFAC (George et al. 2018, eq. 8)
keeps the eigenbasis Q = Q_A ⊗ Q_G of each A ⊗ G and replaces its eigenvalues by the second moments of the
per-example gradients in that basis, the diagonal of QᵀBQ for the exact block B.

The factors, the eigenvalue correction, the products and the inverses are curvlinops' (`KFACLinearOperator`,
`EKFACLinearOperator`, `KFACInverseLinearOperator`); nnlift adds its operator protocol (flat vectors, NumPy in and
out, `to_dense`, `to_scipy`), parameter selection by name or glob, `at=`, micro-batches and the determinism check,
and leaves the caller's model alone: curvlinops hooks into a copy of it, with θ written into the copy.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ._curvlinops import copy_at_point
from .operators import CurvatureOperator, ParameterSelection, SymmetricOperator

__all__ = ["KFACOperator", "EKFACOperator", "KFACInverseOperator"]

_LOSS_MODULES = {nn.functional.mse_loss: nn.MSELoss, nn.functional.cross_entropy: nn.CrossEntropyLoss,
                 nn.functional.binary_cross_entropy_with_logits: nn.BCEWithLogitsLoss}
_INVERSE_METHODS = ("exact", "factored", "heuristic")


def _loss_module(loss_fn: Callable) -> nn.Module:
    """curvlinops' loss module for `loss_fn`: mse_loss, cross_entropy, binary_cross_entropy_with_logits or one of
    their modules, averaging over the batch."""
    if isinstance(loss_fn, tuple(_LOSS_MODULES.values())):
        if loss_fn.reduction != "mean":
            raise ValueError(f"loss_fn must average over the batch (reduction='mean'), got {loss_fn.reduction!r}")
        return loss_fn
    module = next((cls for fn, cls in _LOSS_MODULES.items() if loss_fn is fn), None)
    if module is not None:
        return module()
    raise ValueError("Kronecker-factored curvature needs a negative log-likelihood: loss_fn must be "
                     "nn.functional.mse_loss, cross_entropy or binary_cross_entropy_with_logits (or nn.MSELoss, "
                     f"nn.CrossEntropyLoss, nn.BCEWithLogitsLoss with reduction='mean'), got {loss_fn!r}")


def _owners(model: nn.Module, names: list[str]) -> dict[str, nn.Module]:
    """The module that holds each named parameter."""
    wanted, owners = set(names), {}
    for module_name, module in model.named_modules():
        for param_name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if full in wanted:
                owners[full] = module
    return owners


class KFACOperator(CurvatureOperator):
    """K-FAC of the Fisher/GGN of L (see the module docstring), block-diagonal over layers, in the flat parameter
    order of nnlift's other operators; curvlinops' `KFACLinearOperator` on a copy of the model.

    `fisher_type`: "type-2" (default; the exact expectation over the model's predictive distribution, C backward
    passes per batch; for these losses the K-FAC of the Gauss-Newton matrix, and deterministic), "mc" (`mc_samples`
    sampled targets per example, seeded with `random_state`), "empirical" (the observed targets; for `mse_loss` G
    is κ/N Σ_n g_n g_nᵀ with g_n from ℓ̃_n = ‖f_n − y_n‖², so A ⊗ G approximates C times `EmpiricalFisherOperator`'s
    matrix, as curvlinops' `EFLinearOperator` is) or "forward-only" (G = I).
    `separate_weight_and_bias=False` (M&G's joint W̄ = [W, b]) or True (one factor pair for W, G alone for b).
    `kfac_approx` ("expand"/"reduce", Eschenhagen et al. 2023) matters for layers with weight sharing only.

    The selected parameters must all sit in `nn.Linear` or `nn.Conv2d` layers and `loss_fn` must be `mse_loss`,
    `cross_entropy` or `binary_cross_entropy_with_logits`. The factors are computed once, when the operator is made;
    `micro_batch_size` splits batches while they are accumulated (the same factors for "type-2" and "empirical").
    """

    name = "K-FAC"

    def __init__(self, model: nn.Module, loss_fn: Callable, data, *, parameters: ParameterSelection = None, at=None,
                 fisher_type: str = "type-2", mc_samples: int = 1, kfac_approx: str = "expand",
                 separate_weight_and_bias: bool = False, random_state: int = 0, micro_batch_size: int | None = None,
                 check_deterministic: bool = False):
        super().__init__(model, loss_fn, data, parameters=parameters, at=at, micro_batch_size=micro_batch_size)
        self._backend = self._make_backend(_loss_module(loss_fn), dict(
            seed=random_state, fisher_type=fisher_type, mc_samples=mc_samples, kfac_approx=kfac_approx,
            separate_weight_and_bias=separate_weight_and_bias))
        if check_deterministic:
            self.check_deterministic()

    @staticmethod
    def _backend_class() -> type:
        from curvlinops import KFACLinearOperator  # here, not at the top: its import is slow and warns (torch.jit)

        return KFACLinearOperator

    def _copy_at_point(self) -> tuple[nn.Module, list[nn.Parameter]]:
        """`copy_at_point`, refusing parameters outside `nn.Linear` and `nn.Conv2d` layers."""
        model, params = copy_at_point(self.objective)
        owners = _owners(model, self.objective.names)
        unsupported = {name: type(owners[name]).__name__ for name in self.objective.names
                       if not isinstance(owners[name], nn.Linear | nn.Conv2d)}
        if unsupported:
            raise ValueError(f"{self.name} covers parameters of nn.Linear and nn.Conv2d layers only; {unsupported} sit "
                             "in other modules: leave them out with parameters= (names or globs such as '0.*')")
        return model, params

    def _make_backend(self, loss: nn.Module, options: dict):
        model, params = self._copy_at_point()
        backend = self._backend_class()(model, loss, params, self.objective.data, check_deterministic=False,
                                        **options)
        with torch.enable_grad():
            self._compute(backend)
        return backend

    @staticmethod
    def _compute(backend) -> None:
        backend.compute_kronecker_factors()

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self._backend @ V

    def trace(self) -> float:
        """tr of the approximation, Σ over layers of tr(A)·tr(G) (curvlinops, no products)."""
        return float(self._backend.trace)

    def logdet(self) -> float:
        """log det of the approximation, Σ over layers of dim(G)·logdet(A) + dim(A)·logdet(G) (curvlinops); not
        finite when a factor is singular, as cross-entropy's G of the last layer always is (its rows sum to zero)."""
        return float(self._backend.logdet)

    def inverse(self, damping: float | tuple[float, float], *, method: str = "exact",
                min_damping: float = 1e-8) -> KFACInverseOperator:
        """A damped inverse of the approximation, layer by layer (curvlinops' `KFACInverseLinearOperator`);
        damping > 0.

        `method`: "exact", (A ⊗ G + λI)⁻¹ through the eigendecompositions of A and G (Grosse et al. 2023, eq. 21);
        "factored", (A + λ_A I)⁻¹ ⊗ (G + λ_G I)⁻¹ with λ_A = λ_G = λ or (λ_A, λ_G) = `damping`; "heuristic", M&G 2015
        §6.3's factored Tikhonov damping λ_A = max(π√λ, min_damping), λ_G = max(√λ/π, min_damping) with
        π = √((tr A / dim A) / (tr G / dim G)) (`nnlift.optim.kfac.damped_inverses` without the floor).
        """
        return KFACInverseOperator(self, damping, method=method, min_damping=min_damping)


class EKFACOperator(KFACOperator):
    """EKFAC (George et al. 2018): K-FAC's eigenbasis with the eigenvalues replaced by the per-example gradients'
    second moments in it; curvlinops' `EKFACLinearOperator`, same arguments as `KFACOperator` except
    `fisher_type="forward-only"`. Only the "exact" `inverse` exists (the eigenvalues are no Kronecker product)."""

    name = "EKFAC"

    @staticmethod
    def _backend_class() -> type:
        from curvlinops import EKFACLinearOperator  # here, not at the top: its import is slow and warns (torch.jit)

        return EKFACLinearOperator

    @staticmethod
    def _compute(backend) -> None:
        backend.compute_kronecker_factors()
        backend.compute_eigenvalue_correction()


class KFACInverseOperator(SymmetricOperator):
    """A damped inverse of a `KFACOperator` or `EKFACOperator`; see `KFACOperator.inverse`."""

    def __init__(self, kfac: KFACOperator, damping: float | tuple[float, float], *, method: str = "exact",
                 min_damping: float = 1e-8):
        from curvlinops import KFACInverseLinearOperator  # here, not at the top: its import is slow and warns

        if method not in _INVERSE_METHODS:
            raise ValueError(f"method must be one of {_INVERSE_METHODS}, got {method!r}")
        pair = isinstance(damping, tuple)
        values = damping if pair else (damping,)
        if (pair and (method != "factored" or len(damping) != 2)) or not all(
                isinstance(value, int | float) and math.isfinite(value) and value > 0 for value in values):
            raise ValueError("damping must be a finite number > 0 (the factors are only positive semi-definite: "
                             "cross-entropy's G is always singular), or a pair (λ_A, λ_G) of them for "
                             f"method='factored'; got {damping!r} with method={method!r}")
        if isinstance(kfac, EKFACOperator) and method != "exact":
            raise ValueError(f"EKFAC has only the exact damped inverse (method='exact'), got method={method!r}")
        self.kfac, self.damping, self.method = kfac, damping, method
        self.name = f"{kfac.name} inverse"
        self._backend = KFACInverseLinearOperator(
            kfac._backend, damping=tuple(float(v) for v in damping) if pair else float(damping),
            use_exact_damping=method == "exact", use_heuristic_damping=method == "heuristic",
            min_damping=min_damping)

    @property
    def shape(self) -> tuple[int, int]:
        return self.kfac.shape

    @property
    def dtype(self) -> torch.dtype:
        return self.kfac.dtype

    @property
    def device(self) -> torch.device:
        return self.kfac.device

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self._backend @ V
