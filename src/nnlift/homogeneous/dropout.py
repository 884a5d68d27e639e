"""Dropout in matrix factorization is a regulariser (Cavazza, Morerio, Haeffele, Lane, Murino & Vidal 2018,
AISTATS, "Dropout as a low-rank regularizer for matrix factorization").

Column i of U Vᵀ is kept with probability θ (the retain probability; r_i ~ Bernoulli(θ) independent) and the
kept columns are rescaled by 1/θ. Since E[r_i / θ] = 1 and Var[r_i / θ] = (1 - θ)/θ, the expected loss is
    E_r ||Y - U diag(r) Vᵀ / θ||²_F = ||Y - U Vᵀ||²_F + ((1 - θ)/θ) Σ_i ||u_i||² ||v_i||²
(their deterministic equivalent of dropout). The induced regulariser has degree 4, not the factorization's 2;
at a fixed size r its minimum over the factorizations of W is ||W||_*² / r (Cauchy-Schwarz, with equality for a
balanced split of the SVD), so minimising the dropout objective over r columns solves the convex problem
    min_W ||Y - W||²_F + μ ||W||_*²,  μ = (1 - θ) / (θ r),
whose solution is singular-value thresholding with a data-dependent threshold μ Σ_i s_i (`squared_nuclear_denoise`).
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.optimize import minimize

__all__ = ["dropout_objective", "dropout_objective_exact", "dropout_objective_monte_carlo", "dropout_penalty",
           "fit_dropout_factorization", "squared_nuclear_denoise"]


def _check(Y, U, V, retain: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    Y, U, V = (np.asarray(a, dtype=np.float64) for a in (Y, U, V))
    if U.shape[1] != V.shape[1] or Y.shape != (U.shape[0], V.shape[0]):
        raise ValueError(f"need Y (n1, n2), U (n1, r), V (n2, r); got {Y.shape}, {U.shape}, {V.shape}")
    if not 0 < retain <= 1:
        raise ValueError(f"retain probability must be in (0, 1], got {retain}")
    return Y, U, V


def dropout_penalty(U, V, retain: float) -> float:
    """((1 - θ)/θ) Σ_i ||u_i||² ||v_i||², the regulariser dropout induces."""
    U, V = np.asarray(U, dtype=np.float64), np.asarray(V, dtype=np.float64)
    return float((1 - retain) / retain * np.sum(np.sum(U ** 2, 0) * np.sum(V ** 2, 0)))


def dropout_objective(Y, U, V, retain: float) -> float:
    """The closed form ||Y - U Vᵀ||²_F + dropout_penalty(U, V, θ) of the expected dropout loss."""
    Y, U, V = _check(Y, U, V, retain)
    return float(np.sum((Y - U @ V.T) ** 2)) + dropout_penalty(U, V, retain)


def _masked_losses(Y: np.ndarray, U: np.ndarray, V: np.ndarray, masks: np.ndarray, retain: float) -> np.ndarray:
    products = np.einsum("sk,ik,jk->sij", masks / retain, U, V)
    return np.sum((Y[None] - products) ** 2, axis=(1, 2))


def dropout_objective_exact(Y, U, V, retain: float) -> float:
    """E_r ||Y - U diag(r) Vᵀ / θ||²_F by summing over all 2^r masks with their probabilities (r <= 16)."""
    Y, U, V = _check(Y, U, V, retain)
    if U.shape[1] > 16:
        raise ValueError("enumeration is for r <= 16; use dropout_objective_monte_carlo")
    masks = np.array(list(itertools.product((0.0, 1.0), repeat=U.shape[1])))
    weights = np.prod(np.where(masks > 0, retain, 1 - retain), axis=1)
    return float(weights @ _masked_losses(Y, U, V, masks, retain))


def dropout_objective_monte_carlo(Y, U, V, retain: float, n_samples: int = 100_000, random_state: int = 0,
                                  chunk: int = 10_000) -> tuple[float, float]:
    """(mean, standard error) of ||Y - U diag(r) Vᵀ / θ||²_F over `n_samples` sampled dropout masks."""
    Y, U, V = _check(Y, U, V, retain)
    rng = np.random.default_rng(random_state)
    losses = np.concatenate([
        _masked_losses(Y, U, V, (rng.random((min(chunk, n_samples - start), U.shape[1])) < retain).astype(float),
                       retain) for start in range(0, n_samples, chunk)])
    return float(losses.mean()), float(losses.std(ddof=1) / np.sqrt(n_samples))


def squared_nuclear_denoise(Y, mu: float) -> tuple[np.ndarray, float]:
    """argmin_W ||Y - W||²_F + μ ||W||_*² and its value: s_i = (σ_i - μ S)_+ with S = Σ_i s_i, i.e.
    S = Σ_{i<=k} σ_i / (1 + k μ) for the k with σ_k > μ S >= σ_{k+1}."""
    Y = np.asarray(Y, dtype=np.float64)
    if mu < 0:
        raise ValueError("mu must be >= 0")
    A, sigma, Bt = np.linalg.svd(Y, full_matrices=False)
    totals = np.cumsum(sigma) / (1 + mu * np.arange(1, sigma.size + 1))
    k = int(np.max(np.nonzero(sigma > mu * totals)[0], initial=-1)) + 1
    s = np.maximum(sigma - mu * (totals[k - 1] if k else 0.0), 0.0)
    return (A * s) @ Bt, float(np.sum((sigma - s) ** 2) + mu * s.sum() ** 2)


def fit_dropout_factorization(Y, r: int, retain: float, random_state: int = 0,
                              scale: float = 0.1) -> tuple[np.ndarray, np.ndarray, float]:
    """(U, V, value): L-BFGS on the closed-form dropout objective with r columns from a small random start."""
    Y = np.asarray(Y, dtype=np.float64)
    n1, n2 = Y.shape
    weight = (1 - retain) / retain

    def fun(z: np.ndarray) -> tuple[float, np.ndarray]:
        U, V = z[:n1 * r].reshape(n1, r), z[n1 * r:].reshape(n2, r)
        R = U @ V.T - Y
        u2, v2 = np.sum(U ** 2, 0), np.sum(V ** 2, 0)
        value = np.sum(R ** 2) + weight * np.sum(u2 * v2)
        return value, np.concatenate([(2 * R @ V + 2 * weight * U * v2).ravel(),
                                      (2 * R.T @ U + 2 * weight * V * u2).ravel()])

    z0 = scale * np.random.default_rng(random_state).standard_normal((n1 + n2) * r)
    result = minimize(fun, z0, jac=True, method="L-BFGS-B", options={"maxiter": 20000, "gtol": 1e-12, "ftol": 1e-16})
    return result.x[:n1 * r].reshape(n1, r), result.x[n1 * r:].reshape(n2, r), float(result.fun)
