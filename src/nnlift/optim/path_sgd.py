"""Path-SGD (Neyshabur, Salakhutdinov & Srebro 2015, "Path-SGD: path-normalized optimization in deep neural
networks"): steepest descent with respect to the ℓ2 path regulariser, approximated by a diagonal scaling."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["PathSGD"]


class PathSGD(torch.optim.Optimizer):
    """Path-SGD for a feed-forward network whose weights are a chain of `nn.Linear` layers (ReLU or another
    positively homogeneous activation between them): the paper's update w_e ← w_e − η (∂L/∂w_e)/γ_e(w), with
    γ_e(w) = Σ over the input-output paths through e of Π_{e' ≠ e on the path} w_{e'}² = γ_in(u)·γ_out(v) for the
    edge e = (u → v), γ_in(u) (γ_out(v)) the sum over the paths from the inputs to u (from v to the outputs) of the
    product of their squared weights (the paper's γ_in², γ_out²). γ_in comes from one forward pass of the squared
    weights from the inputs (γ_in = 1 there), γ_out from one backward pass from the outputs (γ_out = 1). The
    scaling is recomputed at every step (the authors' code refreshes it only every so many updates).

    Biases are edges from a bias unit of constant output 1, one per layer: paths start there as at the inputs,
    so b_v enters γ_in(v) as b_v² and its own scaling is γ_out(v). This keeps the update invariant under the
    rescaling of a hidden unit's incoming weights and bias by c > 0 and of its outgoing weights by 1/c, which leaves
    the function unchanged (the invariance the paper is built on); updating the biases by plain SGD would break it.
    Where γ_e = 0 every path through e has another zero weight, so ∂L/∂w_e = 0 too, and w_e stays.

    `layers`: the layers in forward order, or a module whose `nn.Linear` submodules are, in registration order
    (an `nn.Sequential`). `step(closure=None)` is torch's first-order contract: it uses the gradients in `.grad`;
    `closure`, if given, zeroes them, recomputes the loss, calls `backward()` and returns the loss, which `step`
    returns.
    """

    def __init__(self, layers: Sequence[nn.Linear] | nn.Module, lr: float = 0.01):
        layers = [m for m in layers.modules() if isinstance(m, nn.Linear)] if isinstance(layers, nn.Module) \
            else list(layers)
        if not layers or not all(isinstance(layer, nn.Linear) for layer in layers):
            raise ValueError("layers must be a non-empty sequence of nn.Linear, or a module containing them")
        for first, second in zip(layers[:-1], layers[1:], strict=True):
            if first.out_features != second.in_features:
                raise ValueError(f"the layers do not chain: {first} is followed by {second}")
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        self.layers = layers
        super().__init__([p for layer in layers for p in (layer.weight, layer.bias) if p is not None], dict(lr=lr))

    @torch.no_grad()
    def path_scaling(self) -> list[torch.Tensor]:
        """γ_e for every parameter, in the order of `param_groups[0]["params"]`: γ_out(v)·γ_in(u) for the weights
        (out × in, like the weight), γ_out(v) for the biases."""
        first = self.layers[0].weight
        gamma_in = [first.new_ones(first.shape[1])]
        for layer in self.layers:
            bias = 0 if layer.bias is None else layer.bias ** 2
            gamma_in.append(layer.weight ** 2 @ gamma_in[-1] + bias)
        gamma_out = [first.new_ones(self.layers[-1].out_features)]
        for layer in reversed(self.layers):
            gamma_out.insert(0, gamma_out[0] @ layer.weight ** 2)
        scaling = []
        for index, layer in enumerate(self.layers):
            scaling.append(torch.outer(gamma_out[index + 1], gamma_in[index]))
            if layer.bias is not None:
                scaling.append(gamma_out[index + 1].clone())
        return scaling

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        lr = self.param_groups[0]["lr"]
        for param, gamma in zip(self.param_groups[0]["params"], self.path_scaling(), strict=True):
            if param.grad is not None:
                param.sub_(lr * torch.where(gamma > 0, param.grad / torch.where(gamma > 0, gamma, 1), 0))
        return loss
