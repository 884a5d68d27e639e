"""The Hessian of the loss with respect to an intermediate feature of the network, ∇²_Z L, as a matrix-free operator.

Z is the batch of one module's output (or input) inside the forward pass, flattened: for N rows and a feature of
shape (N, D...) the matrix is N·D × N·D. Its products are reverse-over-reverse (Pearlmutter 1994): ∇_Z L is built
once with `create_graph` and each product is one backward pass through it. It is the curvature that
Hessian-aware quantisation and pruning weigh activations by (MQBench's activation Hessian; Dong et al. 2019's
HAWQ on weights), and for the network's output Z = f(X) it is the loss's own H_ℓ of the Gauss-Newton matrix
G = Jᵀ H_ℓ J (Martens 2020). curvlinops had this operator (`ActivationHessianLinearOperator`, experimental) and
removed it in 2.0; hessian-eigenthings and PyHessian have none.

For a loss that averages over rows that do not interact (no batch norm in train mode), ∇²_Z L is block diagonal:
one D×D block per row, each 1/N of that row's loss Hessian. `block_diagonal()` returns the N blocks from D products
(every row probed at once), instead of the N·D products of `to_dense()`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from ._curvlinops import copy_at_point
from .operators import FunctionalLoss, SymmetricOperator

__all__ = ["FeatureHessianOperator"]

_IO = ("output", "input")


class FeatureHessianOperator(SymmetricOperator):
    """∇²_Z L on one batch (X, y), Z the `io` ("output" or "input": its first positional argument) of the module named
    `feature` (a name from `model.named_modules()`), at the model's parameters or at `at` (a flat vector of all
    its parameters, frozen ones included, in `model.named_parameters()` order). The model is not modified: the
    feature is read and replaced by hooks on a copy. `loss_fn` must average over the batch, as for the other
    curvature operators."""

    name = "feature Hessian"

    def __init__(self, model: torch.nn.Module, loss_fn: Callable, data, feature: str, *, io: str = "output",
                 at=None):
        self.objective = FunctionalLoss(model, loss_fn, data, at=at, parameters=lambda name, parameter: True)
        if not self.objective.data.cacheable:
            raise ValueError("the Hessian with respect to a feature is taken on one batch, whose rows make up Z; pass "
                             "data as one (X, y)")
        modules = dict(model.named_modules())
        if not isinstance(feature, str) or feature not in modules or feature == "":
            raise ValueError(f"feature={feature!r} is not a submodule of the model; give one of "
                             f"{[name for name in modules if name]} (names from model.named_modules())")
        if io not in _IO:
            raise ValueError(f"io must be one of {_IO}, got {io!r}")
        self.feature, self.io = feature, io
        self._model = copy_at_point(self.objective, check_used=False)[0]
        for param in self._model.parameters():
            param.requires_grad_(False)
        self._rows_interact = any(isinstance(m, _BatchNorm) and m.training for m in self._model.modules())
        self._replacement: torch.Tensor | None = None
        self._seen: list[torch.Tensor] = []
        module = dict(self._model.named_modules())[feature]
        if io == "output":
            module.register_forward_hook(self._output_hook)
        else:
            module.register_forward_pre_hook(self._input_hook)
        self._X, self._y = self.objective.data.single
        with torch.no_grad():
            self._feature0 = self._run()[0].detach()
        self._product: Callable[[torch.Tensor], torch.Tensor] | None = None

    # -- hooks: read Z on the first pass, then replace it by the variable the Hessian is taken in --------------------
    def _take(self, value) -> torch.Tensor:
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise TypeError(f"the {self.io} of module {self.feature!r} is a {type(value).__name__}, not a floating "
                            f"tensor; pick a module whose {self.io} is one tensor")
        self._seen.append(value.detach().clone())  # a copy: an in-place op after the module (ReLU(inplace=True),
        # a residual +=) would change the live tensor, and would refuse to run on the leaf Z itself
        return value if self._replacement is None else self._replacement.clone()

    def _output_hook(self, module, args, output):
        return self._take(output)

    def _input_hook(self, module, args):
        if not args:
            raise TypeError(f"module {self.feature!r} is called without a positional input; use io='output'")
        return (self._take(args[0]),) + tuple(args[1:])

    def _run(self, replacement: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(Z, loss) of one forward pass, Z replaced by `replacement` when given."""
        self._replacement, self._seen = replacement, []
        try:
            loss = self.objective.loss_fn(self._model(self._X), self._y)
        finally:
            self._replacement = None
        if len(self._seen) != 1:
            raise ValueError(f"module {self.feature!r} ran {len(self._seen)} times in one forward pass; the feature is "
                             "defined only for a module that runs once")
        if loss.ndim != 0:
            raise ValueError(f"loss_fn must return a scalar (the batch mean), got shape {tuple(loss.shape)}")
        return self._seen[0], loss

    # -- the operator ---------------------------------------------------------------------------------------------
    @property
    def feature_shape(self) -> tuple[int, ...]:
        """The shape of Z for the batch (rows first)."""
        return tuple(self._feature0.shape)

    @property
    def shape(self) -> tuple[int, int]:
        return (self._feature0.numel(), self._feature0.numel())

    @property
    def dtype(self) -> torch.dtype:
        return self._feature0.dtype

    @property
    def device(self) -> torch.device:
        return self._feature0.device

    def _single(self, u: torch.Tensor) -> torch.Tensor:
        if self._product is None:
            Z = self._feature0.clone().requires_grad_(True)
            with torch.enable_grad():
                loss = self._run(Z)[1]
                if not loss.requires_grad:
                    raise ValueError(f"the loss does not depend on the {self.io} of {self.feature!r} through "
                                     "autograd (is the rest of the forward pass under torch.no_grad or detached?)")
                gradient = torch.autograd.grad(loss, Z, create_graph=True, allow_unused=True,
                                               materialize_grads=True)[0]
            if not gradient.requires_grad:  # the loss is linear in Z: its Hessian is zero
                self._product = torch.zeros_like
            else:
                self._product = lambda w: torch.autograd.grad(gradient, Z, w, retain_graph=True)[0]
        return self._product(u.reshape(self._feature0.shape)).reshape(-1)

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return torch.stack([self._single(V[:, j]) for j in range(V.shape[1])], dim=1)

    def block_diagonal(self) -> torch.Tensor:
        """The N row blocks (N, D, D) of ∇²_Z L, D the feature size per row, from D products; only for rows that do
        not interact (the blocks off the diagonal are then zero)."""
        rows = self._feature0.shape[0] if self._feature0.ndim else 0
        if rows != self._X.shape[0]:
            raise ValueError(f"the feature has shape {self.feature_shape}, not one row per row of X ({self._X.shape[0]}"
                             "); its Hessian has no row blocks")
        if self._rows_interact:
            raise ValueError("batch norm in train mode couples the rows, so the Hessian is not block diagonal; put "
                             "the model in eval mode or use to_dense()")
        per_row = self._feature0[0].numel()
        probes = torch.eye(per_row, dtype=self.dtype, device=self.device).repeat(rows, 1)  # (N·D, D)
        return (self @ probes).reshape(rows, per_row, per_row)
