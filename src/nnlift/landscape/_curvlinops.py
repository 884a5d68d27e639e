"""Bridges to curvlinops: an nnlift operator seen as a curvlinops `PyTorchLinearOperator`, and a copy of the model
with θ written into the selected parameters (curvlinops hooks into the model it is given; the caller's stays
untouched)."""

from __future__ import annotations

import copy
from functools import cache

import torch
from torch import nn


def copy_at_point(objective, *, check_used: bool = True) -> tuple[nn.Module, list[nn.Parameter]]:
    """A copy of `objective.model` with θ = `objective.point` written into the selected parameters, which alone
    require grad, and those parameters in `objective.names` order; `check_used` refuses parameters the output does
    not depend on (`_check_used`)."""
    model = copy.deepcopy(objective.model)
    named = dict(model.named_parameters())
    for param in model.parameters():
        param.requires_grad_(False)
    with torch.no_grad():
        for name, value in zip(objective.names, objective.unflatten(objective.point), strict=True):
            named[name].copy_(value)
            named[name].requires_grad_(True)
    params = [named[name] for name in objective.names]
    if check_used:
        _check_used(model, params, objective)
    return model, params


def _check_used(model: nn.Module, params: list[nn.Parameter], objective) -> None:
    """Refuse selected parameters that the model's output does not depend on (one forward and backward pass on the
    first batch): curvlinops' Kronecker factors and Jacobians fail on them with autograd's or a shape error."""
    X, _ = next(iter(objective.data))
    with torch.enable_grad():
        output = model(X)
        if not isinstance(output, torch.Tensor):
            return
        grads = torch.autograd.grad(output.sum(), params, allow_unused=True)
    unused = [name for name, g in zip(objective.names, grads, strict=True) if g is None]
    if unused:
        raise ValueError(f"parameters {unused} do not affect the model's output; leave them out with parameters=... "
                         "(the curvature in them is zero)")


@cache
def _shifted_class() -> type:
    from curvlinops._torch_base import PyTorchLinearOperator  # here, not at the top: its import is slow and warns

    class ShiftedSymmetric(PyTorchLinearOperator):
        """A + shift·I for a symmetric nnlift operator A, in curvlinops' tensor-list protocol."""

        SELF_ADJOINT = True

        def __init__(self, op, shift: float):
            P = op.shape[0]
            super().__init__([(P,)], [(P,)])
            self.op, self.shift = op, float(shift)

        @property
        def device(self) -> torch.device:
            return self.op.device

        @property
        def dtype(self) -> torch.dtype:
            return self.op.dtype

        def _matmat(self, X: list[torch.Tensor]) -> list[torch.Tensor]:
            V = X[0]
            out = self.op @ V
            return [out + self.shift * V if self.shift else out]

    return ShiftedSymmetric


def as_curvlinops(op, shift: float = 0.0):
    """`op` + shift·I as a curvlinops `PyTorchLinearOperator` (symmetric: its own adjoint)."""
    return _shifted_class()(op, shift)
