"""Recovery and risk metrics: first-layer recovery up to permutation, sign and scale; excess risk over noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["WeightRecovery", "weight_recovery", "excess_risk", "relative_excess_risk", "reached_noise_floor"]


@dataclass(frozen=True)
class WeightRecovery:
    """Per true neuron |cos| to its matched estimated column (`matching`, -1 where unmatched); read-only arrays."""

    cosines: np.ndarray
    matching: np.ndarray

    @property
    def min(self) -> float:
        return float(self.cosines.min())

    @property
    def mean(self) -> float:
        return float(self.cosines.mean())


def _unit_columns(A: np.ndarray, name: str, allow_zero: bool) -> np.ndarray:
    norms = np.linalg.norm(A, axis=0)
    if not allow_zero and np.any(norms == 0):
        raise ValueError(f"{name} has zero columns {np.flatnonzero(norms == 0).tolist()}; no direction to recover")
    return A / np.where(norms == 0, 1.0, norms)


def weight_recovery(true_first_layer, est_first_layer) -> WeightRecovery:
    """Match estimated first-layer columns to true ones by the Hungarian assignment on |cosine|.

    The identity of a hidden neuron is its weight direction up to sign and scale (NN-LIFT recovers a_j up to
    both), and neurons are only defined up to permutation. So with C_ij = |<a_i, a^_j>| / (|a_i| |a^_j|), the
    matching maximises sum_i C_{i, pi(i)} over injective pi (scipy.optimize.linear_sum_assignment), and
    `cosines[i] = C_{i, pi(i)}`. With more estimated than true columns the spare ones are ignored; with fewer,
    the true neurons left unmatched get cosine 0 and matching -1 (so `min` is then 0 and `mean` is penalised).
    An all-zero estimated column has cosine 0 with everything; a zero true column is an error.
    """
    A = np.asarray(true_first_layer, dtype=np.float64)
    B = np.asarray(est_first_layer, dtype=np.float64)
    if A.ndim != 2 or B.ndim != 2:
        raise ValueError(f"first layers must be 2-D (d, k), got shapes {A.shape} and {B.shape}")
    if A.shape[0] != B.shape[0]:
        raise ValueError(f"true and estimated first layers must have the same input dimension d, got "
                         f"{A.shape[0]} and {B.shape[0]} rows")
    if A.shape[1] == 0:
        raise ValueError("the true first layer has no columns")
    if not (np.isfinite(A).all() and np.isfinite(B).all()):
        raise ValueError("first layers must be finite (no NaN or inf)")
    cos = np.abs(_unit_columns(A, "true_first_layer", False).T @ _unit_columns(B, "est_first_layer", True))
    rows, cols = linear_sum_assignment(cos, maximize=True)
    cosines = np.zeros(A.shape[1])
    matching = np.full(A.shape[1], -1, dtype=np.intp)
    cosines[rows] = np.minimum(cos[rows, cols], 1.0)
    matching[rows] = cols
    cosines.setflags(write=False)
    matching.setflags(write=False)
    return WeightRecovery(cosines, matching)


def _mse(y_true, y_pred) -> float:
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"y_true and y_pred must have the same non-empty shape, got {y_true.shape} and "
                         f"{y_pred.shape}")
    return float(np.mean((y_true - y_pred) ** 2))


def _check_noise_var(noise_var: float, positive: bool) -> float:
    noise_var = float(noise_var)
    if not np.isfinite(noise_var) or noise_var < 0 or (positive and noise_var == 0):
        raise ValueError(f"noise_var must be {'positive' if positive else 'non-negative'}, got {noise_var}")
    return noise_var


def excess_risk(y_true, y_pred, noise_var: float) -> float:
    """Test MSE on noisy labels minus the noise variance: an unbiased estimate of E[(f(x) - E[y|x])^2].

    It can come out slightly negative on a finite test set.
    """
    return _mse(y_true, y_pred) - _check_noise_var(noise_var, positive=False)


def relative_excess_risk(y_true, y_pred, noise_var: float) -> float:
    """`excess_risk` divided by the noise variance (the Bayes risk of the squared loss)."""
    noise_var = _check_noise_var(noise_var, positive=True)
    return excess_risk(y_true, y_pred, noise_var) / noise_var


def reached_noise_floor(mse: float, noise_var: float, tol: float = 0.1) -> bool:
    """Success criterion: test MSE within a fraction `tol` of the noise floor, (mse - noise_var) / noise_var <= tol."""
    noise_var = _check_noise_var(noise_var, positive=True)
    return bool((float(mse) - noise_var) / noise_var <= tol)
