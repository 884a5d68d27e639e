"""Implicit bias of gradient descent on deep linear networks: fully connected vs circular convolutional.

Gunasekar, Lee, Soudry & Srebro (2018), "Implicit bias of gradient descent on linear convolutional networks".
On linearly separable data with the exponential loss, the linear predictor beta(t) of an L-layer network
converges in direction to
- fully connected networks (any width, any L): the L2 max-margin direction argmin ||beta||_2 s.t.
  y_n <beta, x_n> >= 1 (`references.max_margin(X, y, 2)`);
- full-width circular convolutional networks: a first-order stationary point of
  argmin ||F beta||_{2/L} s.t. y_n <beta, x_n> >= 1, F the unitary DFT: for L = 1 the L2 max margin, for L = 2 the
  convex l1 norm of the DFT (`fourier_l1_max_margin`), for L >= 3 a quasi-norm (`fourier_kkt_residual` checks
  stationarity). Small ||F beta||_{2/L} means few active frequencies: sparsity in the Fourier domain.

`train_linear_net` runs gradient descent on the log of the exponential loss, log sum_n exp(-y_n <beta, x_n>):
a monotone transform of the loss, so its gradient flow follows the same path as that of the loss, only faster
(time rescaled by 1 / loss; normalised GD, Nacson et al. 2019). The step is step / max(1, rho^2)^(L-1) with rho the
largest layer norm: the curvature of an L-homogeneous net grows like rho^(2L-2), so this keeps each step a
faithful discretisation of the flow while the margin grows linearly in the number of steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import torch
from scipy.optimize import nnls

from .references import _check_labels, _solve

__all__ = ["ARCHITECTURES", "LinearNetPath", "direction_distance", "effective_frequencies", "fourier_kkt_residual",
           "fourier_l1_max_margin", "fourier_norm", "fourier_spectrum", "train_linear_net"]

ARCHITECTURES = ("fc", "conv")


@dataclass(frozen=True)
class LinearNetPath:
    """Predictors beta (T, B, d) and log exponential losses (T, B) at the recorded `steps` (T,), per data set."""

    architecture: str
    depth: int
    steps: np.ndarray
    beta: np.ndarray
    log_loss: np.ndarray


def fourier_spectrum(beta) -> np.ndarray:
    """|F beta|, the moduli of the unitary DFT over the last axis."""
    return np.abs(np.fft.fft(np.asarray(beta, dtype=np.float64), norm="ortho", axis=-1))


def fourier_norm(beta, p: float) -> np.ndarray:
    """||F beta||_p = (sum_k |beta_hat_k|^p)^(1/p), a quasi-norm for p < 1 (p = 2 / L for L-layer convolutions)."""
    return np.sum(fourier_spectrum(beta) ** p, axis=-1) ** (1.0 / p)


def effective_frequencies(beta) -> np.ndarray:
    """(||F beta||_1 / ||F beta||_2)^2: between 1 (one frequency) and d (a flat spectrum)."""
    spectrum = fourier_spectrum(beta)
    return np.sum(spectrum, axis=-1) ** 2 / np.sum(spectrum ** 2, axis=-1)


def direction_distance(a, b) -> np.ndarray:
    """|| a / ||a|| - b / ||b|| || over the last axis: 0 for the same direction, 2 for opposite ones."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.linalg.norm(a / np.linalg.norm(a, axis=-1, keepdims=True)
                          - b / np.linalg.norm(b, axis=-1, keepdims=True), axis=-1)


def fourier_l1_max_margin(X, y, solver: str | None = None) -> np.ndarray:
    """argmin ||F beta||_1 s.t. y_n <beta, x_n> >= 1: the L = 2 convolutional limit, an SOCP over Re/Im of F beta."""
    X, y = _check_labels(X, y)
    d = X.shape[1]
    F = np.fft.fft(np.eye(d), norm="ortho")
    beta = cp.Variable(d)
    modulus = cp.norm(cp.vstack([F.real @ beta, F.imag @ beta]), 2, axis=0)
    _solve(cp.Problem(cp.Minimize(cp.sum(modulus)), [cp.multiply(y, X @ beta) >= 1]), "l1-DFT max margin", solver)
    return np.asarray(beta.value, dtype=np.float64)


def fourier_kkt_residual(beta, X, y, p: float, support_tol: float = 1e-3, sv_tol: float = 1e-2) -> float:
    """Relative residual of the KKT conditions of argmin ||F beta||_p^p s.t. y_n <beta, x_n> >= 1 at beta.

    On the frequencies S where |beta_hat| > support_tol * max |beta_hat| (where the objective is differentiable)
    a stationary point has grad ||F beta||_p^p = sum_n lambda_n y_n x_n, lambda >= 0 on the support vectors (the
    points with margin <= (1 + sv_tol) * the smallest). Returns min_lambda ||P_S (grad - Z lambda)|| / ||P_S grad||
    at beta rescaled to margin 1: 0 at a first-order stationary point (the convolutional limit of Gunasekar et al.
    2018), 1 when no multiplier explains the gradient.
    """
    X, y = _check_labels(X, y)
    beta = np.asarray(beta, dtype=np.float64)
    margins = y * (X @ beta)
    if margins.min() <= 0:
        raise ValueError("beta does not separate the data")
    beta = beta / margins.min()
    margins = margins / margins.min()
    spectrum = np.fft.fft(beta, norm="ortho")
    support = np.abs(spectrum) > support_tol * np.abs(spectrum).max()

    def project(v):  # onto real vectors whose spectrum lies on the support (S is closed under k -> -k)
        return np.fft.ifft(support[:, None] * np.fft.fft(v, norm="ortho", axis=0), norm="ortho", axis=0).real

    coef = np.zeros_like(spectrum)
    coef[support] = p * np.abs(spectrum[support]) ** (p - 2) * spectrum[support]
    grad = np.fft.ifft(coef, norm="ortho").real
    Z = project((y[:, None] * X)[margins <= 1 + sv_tol].T)
    _, residual = nnls(Z, grad, maxiter=50 * Z.shape[1] + 100)
    return float(residual / np.linalg.norm(grad))


def _fc_beta(layers: list[torch.Tensor]) -> torch.Tensor:
    """beta = W_1^T ... W_{L-1}^T w_L for x -> w_L^T W_{L-1} ... W_1 x, batched over data sets."""
    beta = layers[-1]
    for W in reversed(layers[:-1]):
        beta = (beta[:, None, :] @ W)[:, 0]
    return beta


def _conv_beta(layers: list[torch.Tensor]) -> torch.Tensor:
    """beta with F beta = prod_l F w_l: an L-layer full-width circular convolutional net (the paper's) up to
    a constant factor and an index reversal of some filters, orthogonal reparametrisations that GD commutes with."""
    spectrum = torch.fft.fft(layers[0], norm="ortho")
    for w in layers[1:]:
        spectrum = spectrum * torch.fft.fft(w, norm="ortho")
    return torch.fft.ifft(spectrum, norm="ortho").real


def train_linear_net(X, y, architecture: str, depth: int, n_steps: int, step: float = 0.5, init_scale: float = 0.1,
                     random_state=None, n_records: int = 40) -> LinearNetPath:
    """Gradient descent on log sum_n exp(-y_n <beta(w), x_n>) for an L-layer linear `fc` or `conv` network.

    X is (n, d) or a batch (B, n, d) of data sets and y (n,) or (B, n), one independent network per data set
    (float64 torch, batched). Layers start with N(0, init_scale^2 / d) entries; `fc` has d x d hidden layers.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    if depth < 1 or n_steps < 1 or step <= 0 or init_scale <= 0:
        raise ValueError("depth >= 1, n_steps >= 1, step > 0 and init_scale > 0 are required")
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim == 2:
        X, y = X[None], y[None]
    for Xb, yb in zip(X, y, strict=True):
        _check_labels(Xb, yb)
    B, _, d = X.shape
    rng = np.random.default_rng(random_state)
    shapes = [(B, d, d)] * (depth - 1) + [(B, d)] if architecture == "fc" else [(B, d)] * depth
    layers = [torch.tensor(rng.normal(0.0, init_scale / np.sqrt(d), shape), requires_grad=True) for shape in shapes]
    net = _fc_beta if architecture == "fc" else _conv_beta
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    record = set(np.unique(np.concatenate([[0], np.geomspace(1, n_steps, n_records).astype(int)])).tolist())
    steps, betas, losses = [], [], []
    for t in range(n_steps + 1):
        beta = net(layers)
        log_loss = torch.logsumexp(-yt * (Xt @ beta[:, :, None])[:, :, 0], dim=1)
        if t in record:
            steps.append(t)
            betas.append(beta.detach().numpy().copy())
            losses.append(log_loss.detach().numpy().copy())
        if t == n_steps:
            break
        grads = torch.autograd.grad(log_loss.sum(), layers)
        with torch.no_grad():
            size = torch.stack([w.pow(2).flatten(1).sum(1) for w in layers]).amax(0)
            eta = step / size.clamp(min=1.0) ** (depth - 1)
            for w, g in zip(layers, grads, strict=True):
                w -= eta.view(-1, *[1] * (w.dim() - 1)) * g
    return LinearNetPath(architecture, depth, np.array(steps), np.array(betas), np.array(losses))
