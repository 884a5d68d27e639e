"""Scale and bias of each neuron given its direction: the least-squares alternative to the Fourier step.

With unit directions a_j fixed, f(x) = sum_j c_j sigma(s_j a_j^T x + b_j) + c0 has 3k + 1 parameters.
Each neuron is first fitted alone on the current residual (backfitting, Hastie & Tibshirani 1990) from a
grid over (s_j, b_j) — which also settles the sign that a symmetric CP leaves open — and then all are refined
jointly by trust-region least squares (scipy.optimize.least_squares with the analytic Jacobian).

Backfitting alone can settle in a poor basin when the projections a_j^T x are correlated (k close to d): with
exact directions a k = d = 10 tanh teacher ended at 64 sigma^2. So the joint refinement also starts from every
neuron at a common scale with zero bias and the output layer by least squares (a start that treats all neurons
alike), and the start with the smallest residual wins. Scales are bounded (|s| <= `MAX_SCALE`, in units of the
pre-activation's standard deviation for whitened inputs) so that no unit degenerates into a step function whose
output weight vanishes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize

from ..activations import get_activation

__all__ = ["ScaleBias", "fit_scale_bias"]

_SCALES = np.array([-4.0, -2.0, -1.0, -0.5, 0.5, 1.0, 2.0, 4.0])
_BIASES = np.linspace(-3.0, 3.0, 13)
_COMMON_SCALES = (1.0, 2.0)
_SCREEN_ROWS = 5_000
MAX_SCALE = 20.0
_MAX_BIAS = 3.0 * MAX_SCALE


@dataclass
class ScaleBias:
    """Per-neuron scale s (may be negative), bias b, output weights c, intercept c0 and fit quality."""

    scale: np.ndarray
    bias: np.ndarray
    coef: np.ndarray
    intercept: float
    r2: float


def _best_single_neuron(act, u: np.ndarray, r: np.ndarray, current: tuple[float, float], w: np.ndarray
                        ) -> tuple[float, float, float]:
    """Best (s, b) over the grid and the current pair, with c by 1-D weighted least squares (plus an offset)."""
    best = (np.inf, 1.0, 0.0, 0.0)
    r_c = r - _mean(r, w)
    candidates = [(s, _BIASES) for s in _SCALES] + [(current[0], np.array([current[1]]))]
    wc = w[:, None]
    for s, biases in candidates:
        H = act.numpy(s * u[:, None] + biases[None, :])
        H_c = H - _mean(H, w)
        c = (wc * H_c * r_c[:, None]).sum(axis=0) / ((wc * H_c**2).sum(axis=0) + 1e-12)
        sse = (wc * (r_c[:, None] - H_c * c) ** 2).sum(axis=0)
        i = int(np.argmin(sse))
        if sse[i] < best[0]:
            best = (sse[i], s, biases[i], c[i])
    return best[1:]


def _mean(values: np.ndarray, w: np.ndarray):
    """The w-weighted mean over rows (w has mean 1)."""
    return w @ values / len(w)


def fit_scale_bias(X: np.ndarray, y: np.ndarray, directions: np.ndarray, activation, *, rounds: int = 2,
                   sweeps: int = 2, max_nfev: int = 200, sample_weight=None) -> ScaleBias:
    """Least-squares scale, bias and output weights for fixed unit directions (columns of `directions`).

    Each of `rounds` runs `sweeps` backfitting sweeps (a neuron's grid search sees the residual of all the
    others, and keeps its current (s, b) unless the grid beats it) and then the joint trust-region refinement;
    the second round lets a neuron whose orientation was settled against a poor residual switch basins. The
    joint refinement also runs from the common-scale starts (module docstring); the lowest residual wins.
    `sample_weight` weights each row's squared residual.
    """
    act = get_activation(activation)
    U = X @ directions
    n, k = U.shape
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64) * (n / np.sum(
        sample_weight))
    root = np.sqrt(w)
    lower = np.concatenate([np.full(k, -MAX_SCALE), np.full(k, -_MAX_BIAS), np.full(k + 1, -np.inf)])
    upper = -lower

    def unpack(theta):
        return theta[:k], theta[k:2 * k], theta[2 * k:3 * k], theta[3 * k]

    def residuals(theta, rows=slice(None)):
        s, b, c, c0 = unpack(theta)
        return root[rows] * (act.numpy(U[rows] * s + b) @ c + c0 - y[rows])

    def jacobian(theta, rows=slice(None)):
        s, b, c, _ = unpack(theta)
        pre = U[rows] * s + b
        grad = act.numpy_grad(pre) * c
        return root[rows, None] * np.hstack([grad * U[rows], grad, act.numpy(pre), np.ones((pre.shape[0], 1))])

    def refine(theta, rows=slice(None)):
        theta = np.clip(theta, lower, upper)
        return optimize.least_squares(lambda th: residuals(th, rows), theta, jac=lambda th: jacobian(th, rows),
                                      method="trf", bounds=(lower, upper), max_nfev=max_nfev).x

    theta = np.concatenate([np.ones(k), np.zeros(k), np.zeros(k), [float(_mean(y, w))]])
    for _ in range(rounds):
        theta = refine(_backfit(act, U, y, theta, sweeps, w))
    few = slice(0, _SCREEN_ROWS)  # common-scale starts are screened on a few rows; a winner is refined on all
    candidates = [refine(_common_scale_start(act, U[few], y[few], scale, root[few]), few) for scale in _COMMON_SCALES]
    best = min(candidates, key=lambda candidate: float(np.sum(residuals(candidate) ** 2)))
    if np.sum(residuals(best) ** 2) < np.sum(residuals(theta) ** 2):
        theta = refine(best)
    scale, bias, coef, intercept = unpack(theta)
    r2 = 1.0 - float(np.mean(residuals(theta) ** 2) / max(_mean((y - _mean(y, w)) ** 2, w), 1e-300))
    return ScaleBias(scale.copy(), bias.copy(), coef.copy(), float(intercept), r2)


def _common_scale_start(act, U: np.ndarray, y: np.ndarray, scale: float, root: np.ndarray) -> np.ndarray:
    """Every neuron at scale `scale` and bias 0, output weights and intercept by least squares (rows weighted by
    root**2)."""
    k = U.shape[1]
    H = np.column_stack([act.numpy(scale * U), np.ones(len(y))])
    coef = np.linalg.lstsq(root[:, None] * H, root * y, rcond=None)[0]
    return np.concatenate([np.full(k, scale), np.zeros(k), coef[:k], coef[k:]])


def _backfit(act, U: np.ndarray, y: np.ndarray, theta: np.ndarray, sweeps: int, w: np.ndarray) -> np.ndarray:
    """Backfitting sweeps over the neurons (Hastie & Tibshirani 1990) from parameters theta = (s, b, c, c0)."""
    k = U.shape[1]
    scale, bias, coef = theta[:k].copy(), theta[k:2 * k].copy(), theta[2 * k:3 * k].copy()
    contrib = act.numpy(U * scale + bias) * coef
    intercept = float(_mean(y - contrib.sum(axis=1), w))
    for _ in range(sweeps):
        for j in range(k):
            residual = y - intercept - contrib.sum(axis=1) + contrib[:, j]
            scale[j], bias[j], coef[j] = _best_single_neuron(act, U[:, j], residual, (scale[j], bias[j]), w)
            contrib[:, j] = coef[j] * act.numpy(scale[j] * U[:, j] + bias[j])
            intercept = float(_mean(y - contrib.sum(axis=1), w))
    return np.concatenate([scale, bias, coef, [intercept]])
