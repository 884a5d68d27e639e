"""Activation registry: values, first derivatives, and Gaussian expectations of higher derivatives.

NN-LIFT's moment of order m carries the first layer with weights
lambda_j = a2_j * E[sigma^(m)(w_j^T x + b_j)] (Janzamin, Sedghi, Anandkumar 2015, eq. (6)), so which order
carries signal is a property of the activation: `gaussian_derivative_expectation` computes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import integrate, special, stats

__all__ = ["Activation", "get_activation", "available_activations", "gaussian_derivative_expectation"]


@dataclass(frozen=True)
class Activation:
    """An activation sigma with a torch value, a numpy value and a numpy first derivative.

    `kinks` lists points where sigma is not smooth (used to split quadrature intervals).
    """

    name: str
    torch: Callable[[torch.Tensor], torch.Tensor]
    numpy: Callable[[np.ndarray], np.ndarray]
    numpy_grad: Callable[[np.ndarray], np.ndarray]
    kinks: tuple[float, ...] = ()

    def __call__(self, u):
        if isinstance(u, torch.Tensor):
            return self.torch(u)
        return self.numpy(np.asarray(u, dtype=float))


def _gelu_np(u):
    return u * special.ndtr(u)


def _gelu_grad_np(u):
    return special.ndtr(u) + u * np.exp(-0.5 * u * u) / np.sqrt(2 * np.pi)


_REGISTRY: dict[str, Activation] = {
    "sigmoid": Activation(
        "sigmoid", torch.sigmoid, special.expit, lambda u: special.expit(u) * (1 - special.expit(u))
    ),
    "tanh": Activation("tanh", torch.tanh, np.tanh, lambda u: 1 - np.tanh(u) ** 2),
    "softplus": Activation(
        "softplus", torch.nn.functional.softplus, lambda u: np.logaddexp(0.0, u), special.expit
    ),
    "relu": Activation("relu", torch.relu, lambda u: np.maximum(u, 0.0), lambda u: (u > 0).astype(float), (0.0,)),
    "gelu": Activation("gelu", torch.nn.functional.gelu, _gelu_np, _gelu_grad_np),
}


def available_activations() -> list[str]:
    """Names accepted by `get_activation`."""
    return sorted(_REGISTRY)


def get_activation(activation: str | Activation) -> Activation:
    """Look an activation up by name (or pass an `Activation` through)."""
    if isinstance(activation, Activation):
        return activation
    try:
        return _REGISTRY[activation]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown activation {activation!r}; choose one of {available_activations()}"
        ) from None


def gaussian_derivative_expectation(activation: str | Activation, order: int, scale: float = 1.0,
                                    bias: float = 0.0) -> float:
    """E[sigma^(m)(scale * z + bias)] for z ~ N(0, 1), m = `order` >= 0.

    Uses Gaussian integration by parts (Stein's lemma in one dimension):
    E[g^(m)(z)] = E[g(z) He_m(z)] with g(z) = sigma(scale z + bias) and g^(m) = scale^m sigma^(m), so the
    derivative is never formed; this also gives the distributional derivatives of ReLU. The integral is done
    by adaptive quadrature split at the activation's kinks.
    """
    act = get_activation(activation)
    if order < 0 or scale == 0:
        raise ValueError("order must be >= 0 and scale non-zero")
    hermite = special.hermitenorm(order)

    def integrand(z):
        return act.numpy(np.asarray(scale * z + bias)) * hermite(z) * stats.norm.pdf(z)

    breaks = sorted({-12.0, 12.0, *[(k - bias) / scale for k in act.kinks if abs((k - bias) / scale) < 12]})
    total = sum(integrate.quad(integrand, lo, hi, limit=200, epsabs=1e-13, epsrel=1e-11)[0]
                for lo, hi in zip(breaks[:-1], breaks[1:], strict=True))
    return float(total / scale**order)
