"""Tiny float64 networks and data for the landscape tests, and dense curvature matrices built the slow way with
torch.autograd.functional (the references the operators are checked against)."""

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from nnlift.landscape import HessianOperator, flatten_params, parameter_names, unflatten


def make_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()


class _WithUnused(nn.Module):
    """A tanh layer 3 -> 2 (8 parameters) and a 5 -> 5 layer (30) that forward never calls."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.used, self.unused = nn.Linear(3, 2), nn.Linear(5, 5)

    def forward(self, x):
        return torch.tanh(self.used(x))


def make_with_unused() -> nn.Module:
    return _WithUnused().double()


@pytest.fixture(params=["mse", "cross_entropy"])
def problem(request):
    """A 3-4-2 tanh MLP (P = 26) on 11 rows, with MSE on real targets or cross-entropy on two classes."""
    generator = torch.Generator().manual_seed(1)
    X = torch.randn(11, 3, generator=generator, dtype=torch.float64)
    if request.param == "mse":
        y, loss_fn = torch.randn(11, 2, generator=generator, dtype=torch.float64), nn.functional.mse_loss
    else:
        y, loss_fn = torch.randint(0, 2, (11,), generator=generator), nn.functional.cross_entropy
    return SimpleNamespace(model=make_mlp(), loss_fn=loss_fn, X=X, y=y)


def _output_of_flat(model, X):
    names, shapes = parameter_names(model), [p.shape for p in model.parameters()]
    return lambda theta: functional_call(model, dict(zip(names, unflatten(theta, shapes), strict=True)), (X,))


def dense_hessian(model, loss_fn, X, y) -> torch.Tensor:
    output = _output_of_flat(model, X)
    return torch.autograd.functional.hessian(lambda theta: loss_fn(output(theta), y), flatten_params(model))


def dense_gauss_newton(model, loss_fn, X, y) -> torch.Tensor:
    """Jᵀ H_ℓ J with J the (n·c, P) Jacobian of the outputs and H_ℓ the (n·c, n·c) Hessian of the loss in them."""
    output, theta = _output_of_flat(model, X), flatten_params(model)
    out = output(theta).detach()
    J = torch.autograd.functional.jacobian(output, theta).reshape(out.numel(), theta.numel())
    H_loss = torch.autograd.functional.hessian(lambda z: loss_fn(z.reshape(out.shape), y), out.reshape(-1))
    return J.T @ H_loss @ J


def dense_fisher(model, loss_fn, X, y) -> torch.Tensor:
    """(1/n) Σ_i g_i g_iᵀ with each g_i from its own torch.autograd.grad call."""
    gradients = []
    for i in range(X.shape[0]):
        model.zero_grad()
        loss_fn(model(X[i:i + 1]), y[i:i + 1]).backward()
        gradients.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
        model.zero_grad()
    G = torch.stack(gradients)
    return G.T @ G / X.shape[0]


@pytest.fixture
def dense():
    return SimpleNamespace(hessian=dense_hessian, gauss_newton=dense_gauss_newton, fisher=dense_fisher)


def gd_checkpoints(model, loss_fn, X, y, n: int, lr: float) -> list[torch.Tensor]:
    """n checkpoints, one per full-batch gradient-descent step, on a copy of the model."""
    model = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    checkpoints = []
    for _ in range(n):
        checkpoints.append(flatten_params(model))
        optimizer.zero_grad()
        loss_fn(model(X), y).backward()
        optimizer.step()
    return checkpoints


@pytest.fixture
def run(problem):
    """Four checkpoints of the 26-parameter MLP and the eigenvalues of their dense Hessians, ascending."""
    data = (problem.X, problem.y)
    checkpoints = gd_checkpoints(problem.model, problem.loss_fn, *data, n=4, lr=0.5)
    exact = []
    for theta in checkpoints:
        H = HessianOperator(problem.model, problem.loss_fn, data, at=theta).to_dense().numpy()
        exact.append(np.linalg.eigvalsh((H + H.T) / 2))
    return problem, data, checkpoints, np.array(exact)


@pytest.fixture
def slow_run():
    """A 5-8-3 tanh MLP (P = 75) on 40 rows and four checkpoints of gradient descent with a small step (0.01)."""
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(40, 5, generator=generator, dtype=torch.float64)
    y = torch.randn(40, 3, generator=generator, dtype=torch.float64)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    return model, (X, y), gd_checkpoints(model, nn.functional.mse_loss, X, y, n=4, lr=0.01)
