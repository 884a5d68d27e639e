"""Shared problems for the second-order optimizer tests: a small tanh regression and the MLP that fits it."""

import pytest
import torch
from torch import nn


def _regression_data(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 4, generator=g, dtype=torch.float64)
    w = torch.randn(4, 3, generator=g, dtype=torch.float64)
    y = (torch.tanh(X @ w) @ torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64))[:, None]
    return X, y


def _mlp(seed=1):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)).double()


@pytest.fixture
def regression_data():
    """A function (n=200, seed=0) -> (X (n, 4), y (n, 1)) from a planted tanh network."""
    return _regression_data


@pytest.fixture
def mlp():
    """A function seed -> a float64 4-8-1 tanh MLP."""
    return _mlp
