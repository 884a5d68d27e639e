"""How well a score function satisfies Stein's identity on data: a check for any score family.

For x ~ p and a smooth bounded f, E[f(x) S_m(x)] = E[grad^m f(x)] (Janzamin, Sedghi, Anandkumar 2014, Thm. 6).
With f(x) = sin(u^T (x - x_bar) / s + pi/4) for a unit probe u (s the spread of u^T x), both sides contracted
with (I, u, ..., u) are d-vectors whose difference must vanish up to Monte-Carlo noise when the score is the
input density's; a wrong score (e.g. Gaussian on heavy-tailed inputs) leaves a difference far above the noise.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .._backend import sample_rows

__all__ = ["stein_check"]

_PHASE = math.pi / 4


def stein_check(score, X, orders=(1, 2, 3), n_probes: int = 4, max_rows: int = 20_000, n_batches: int = 10,
                random_state=None) -> dict:
    """Stein's identity on (at most `max_rows` rows of) X for each order: relative error and noise level.

    Returns {"orders": {m: {"relative_error", "noise", "z"}}, "rows"}: relative_error = |E[f S_m] - E[grad^m f]|
    / |E[grad^m f]| averaged over probes, noise = the same ratio for the Monte-Carlo standard error (from
    `n_batches` batch means), z = error / standard error. z of a few is consistent with a correct score.
    """
    rng = np.random.default_rng(random_state)
    data = torch.as_tensor(sample_rows(X, max_rows, random_state))
    n = data.shape[0]
    if n < 2 * n_batches:
        raise ValueError(f"stein_check needs at least {2 * n_batches} rows, got {n}")
    centred = data - data.mean(dim=0)
    probes = rng.standard_normal((data.shape[1], n_probes))
    probes /= np.linalg.norm(probes, axis=0)
    result = {}
    for order in orders:
        errors, noises, zs = [], [], []
        for u in torch.as_tensor(probes).T:
            projection = centred @ u
            spread = float(projection.std())
            f = torch.sin(projection / spread + _PHASE)
            derivative = _sin_derivative(projection / spread + _PHASE, order) / spread**order
            batches = torch.stack([
                score.contract_chunk(data[part], f[part], u[:, None], order)[:, 0] / len(part)
                - u * derivative[part].mean()
                for part in np.array_split(np.arange(n), n_batches)])
            difference = batches.mean(dim=0)
            stderr = batches.std(dim=0) / math.sqrt(n_batches)
            scale = float(derivative.mean().abs())
            errors.append(float(difference.norm()) / scale)
            noises.append(float(stderr.norm()) / scale)
            zs.append(float(difference.norm() / stderr.norm()))
        result[order] = {"relative_error": float(np.mean(errors)), "noise": float(np.mean(noises)),
                         "z": float(np.mean(zs))}
    return {"orders": result, "rows": n}


def _sin_derivative(t: torch.Tensor, order: int) -> torch.Tensor:
    """d^m/dt^m sin(t) = sin(t + m pi / 2)."""
    return torch.sin(t + order * math.pi / 2)
