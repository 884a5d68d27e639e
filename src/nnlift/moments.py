"""Implicit cross-moment operators M_m = E[y · S_m(x)] (Janzamin, Sedghi, Anandkumar 2015, Lemma 2).

By Stein's lemma M_m = E[grad^m f(x)] = sum_j lambda_j a_j^{⊗m} for a two-layer network, so M_3 / M_4 are
low-rank symmetric tensors whose components are the first-layer weights. `CrossMoment` never forms the d^m
tensor: it implements the symmetric-operator protocol of `nnlift.tensor` (`contract`, `project`) with one
streaming pass over row chunks per call, each pass a few matrix products per chunk.
"""

from __future__ import annotations

import numpy as np
import torch

from ._backend import (
    DEFAULT_CHUNK_ROWS,
    check_finite_chunk,
    iter_row_chunks,
    resolve_device,
    resolve_dtype,
    to_tensor,
)
from .scores import get_score

__all__ = ["CrossMoment"]


class CrossMoment:
    """The operator T = E[(y - mean(y)) · S_order(x)] over the rows of (X, y).

    Centring y leaves T unchanged (E[S_m(x)] = 0 for m >= 1) and removes the intercept's variance.
    `contract(V)` returns T(I, v, ..., v) per column, `contract_pairs(U, W)` returns T(I, u, w) (order 3),
    `project(Q)` returns the dense k^order tensor T(Q, ..., Q). Each call is one pass over the rows; `passes`
    counts them. The score must already be fitted (`score.fit(X)`) or is fitted here.
    """

    def __init__(self, X, y, order: int = 3, score="gaussian", *, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                 device=None, dtype=None):
        if order not in (2, 3, 4):
            raise ValueError(f"order must be 2, 3 or 4, got {order}")
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}")
        y = np.asarray(y) if not isinstance(y, torch.Tensor) else y
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise ValueError(f"y must be 1-D with {X.shape[0]} entries to match X, got shape {tuple(y.shape)}")
        self.X, self.y = X, y
        self.order = order
        self.dim = X.shape[1]
        self.n_samples = X.shape[0]
        self.chunk_rows = int(chunk_rows)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.score = get_score(score)
        if not hasattr(self.score, "precision_"):
            self.score.fit(X, chunk_rows=self.chunk_rows)
        self.y_mean = float(sum(float(to_tensor(c, self.device, torch.float64).sum())
                                for _, c, _ in iter_row_chunks(y, None, self.chunk_rows)) / self.n_samples)
        self.passes = 0
        self._finite_checked = False

    def _chunks(self):
        for start, X_chunk, y_chunk in iter_row_chunks(self.X, self.y, self.chunk_rows):
            X_t = to_tensor(X_chunk, self.device, self.dtype)
            y_t = to_tensor(y_chunk, self.device, self.dtype)
            if not self._finite_checked:
                check_finite_chunk(X_t, "X", start)
                check_finite_chunk(y_t, "y", start)
            yield X_t, y_t - self.y_mean

    def _stream(self, per_chunk) -> np.ndarray:
        """One pass: the mean over rows of per_chunk's sums (the first pass also checks the rows are finite)."""
        self.passes += 1
        total = None
        for X_t, w in self._chunks():
            part = per_chunk(X_t, w)
            total = part if total is None else total + part
        self._finite_checked = True
        return (total / self.n_samples).to(torch.float64).cpu().numpy()

    def _probes(self, V) -> torch.Tensor:
        V = np.asarray(V, dtype=np.float64)
        if V.ndim != 2 or V.shape[0] != self.dim:
            raise ValueError(f"probes must have shape ({self.dim}, m), got {V.shape}")
        return torch.as_tensor(V, dtype=self.dtype, device=self.device)

    def contract(self, V) -> np.ndarray:
        """T(I, v, ..., v) for each column v of V (d x m): one pass, O(n d m) work."""
        V_t = self._probes(V)
        return self._stream(lambda X_t, w: self.score.contract_chunk(X_t, w, V_t, self.order))

    def contract_pairs(self, U, W) -> np.ndarray:
        """T(I, u_i, w_i) for column pairs of U and W (order 3 only)."""
        if self.order != 3:
            raise ValueError("contract_pairs is defined for the third-order moment only")
        U_t, W_t = self._probes(U), self._probes(W)
        return self._stream(lambda X_t, w: self.score.contract_pairs_chunk(X_t, w, U_t, W_t))

    def project(self, Q) -> np.ndarray:
        """The dense projected tensor T(Q, ..., Q), shape (k,)*order for Q of shape (d, k)."""
        Q_t = self._probes(Q)
        return self._stream(lambda X_t, w: self.score.project_chunk(X_t, w, Q_t, self.order))

    def row_norm_sq(self, V, max_rows: int = 2000) -> np.ndarray:
        """Mean over (at most `max_rows`) rows of ||y_r S(x_r)(I, v, ..., v)||^2 per column v.

        The per-row variance of the contraction: the standard error of `contract(V)` on n rows is about
        sqrt(row_norm_sq / n), which is what the sample-size diagnostic uses.
        """
        V_t = self._probes(V)
        rows = min(max_rows, self.n_samples)
        X_t = to_tensor(self.X[:rows], self.device, self.dtype)
        w = to_tensor(self.y[:rows], self.device, self.dtype) - self.y_mean
        per_row = self.score.contract_rows(X_t, w, V_t, self.order)
        return (per_row**2).sum(dim=1).mean(dim=0).to(torch.float64).cpu().numpy()
