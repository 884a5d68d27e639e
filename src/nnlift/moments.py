"""Implicit cross-moment operators M_m = E[y · S_m(x)] (Janzamin, Sedghi, Anandkumar 2015, Lemma 2).

By Stein's lemma M_m = E[grad^m f(x)] = sum_j lambda_j a_j^{⊗m} for a two-layer network, so M_3 / M_4 are
low-rank symmetric tensors whose components are the first-layer weights. `CrossMoment` never forms the d^m
tensor: it implements the symmetric-operator protocol of `nnlift.tensor` (`contract`, `project`) with one
streaming pass over row chunks per call, each pass a few matrix products per chunk. The rows come from any
`nnlift._backend.RowSource` (arrays, memmaps, torch tensors, Dask arrays, re-iterable chunk functions);
`make_moment(..., client=client)` runs the same passes as map-reduce on a Dask cluster
(`nnlift.distributed.DaskCrossMoment`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ._backend import (
    DEFAULT_CHUNK_ROWS,
    as_read_only_tensor,
    as_row_source,
    check_finite_chunk,
    iter_row_chunks,
    resolve_device,
    resolve_dtype,
    suggest_smaller_chunks,
    to_tensor,
)
from .scores import GaussianScore, get_score
from .tensor.image import from_polarization, polarization_probes

__all__ = ["CrossMoment", "RowSums", "chunk_sums", "finish_sums", "make_moment", "prepare_probes", "statistic_size"]

_ORDERS = (2, 3, 4)


_ROW_TERMS_PER_PIECE = 4_000_000


def check_order(order: int) -> int:
    """The moment order, which must be 2, 3 or 4."""
    if order not in _ORDERS:
        raise ValueError(f"order must be 2, 3 or 4, got {order}")
    return order


# Up to this dimension the construction pass also sums x_r x_r^T and y_r x_r x_r^T (2 n d^2 multiply-adds once,
# as much as one contract pass with d probes), so that streamed statistics need no mean terms per chunk at all
# and a Gaussian score needs no covariance pass of its own.
SECOND_MOMENT_MAX_DIM = 256
RAW_MAX_ROUNDING = 1e-5


class RowSums(NamedTuple):
    """Probe-independent sums over all rows, w = y - mean(y): sum w x (d,), sum w, and sum w x x^T (d, d) when
    d <= SECOND_MOMENT_MAX_DIM and the raw kernel is safe (else None); the plain column sums (sum x, sum x x^T)
    when d <= SECOND_MOMENT_MAX_DIM (else None), from which a Gaussian score is fitted; float64."""

    y_mean: float
    weighted_x: np.ndarray
    weight_sum: float
    weighted_xx: np.ndarray | None
    column_sums: tuple[np.ndarray, np.ndarray] | None

    @property
    def raw(self) -> bool:
        """Whether streamed statistics run the raw per-chunk kernel (no mean terms) and take them from here."""
        return self.weighted_xx is not None


def _streamed(score, statistic: str, order: int) -> bool:
    return hasattr(score, "streamed_chunk") and score.streams(statistic, order)


def statistic_size(score, statistic: str, probes: list[np.ndarray], order: int, raw: bool = False) -> int:
    """Length of the flattened `chunk_sums` for these probes."""
    V = probes[0]
    if _streamed(score, statistic, order):
        return (V.shape[0] + (0 if raw else 1)) * V.shape[1]
    if statistic == "project":
        return V.shape[1] ** order
    if statistic == "image":
        return V.shape[0] * V.shape[1] ** (order - 1)
    if statistic == "row_norm_sq":
        return V.shape[1]
    return V.size


def finish_sums(score, statistic: str, total: np.ndarray, probes: list[np.ndarray], order: int,
                sums: RowSums) -> np.ndarray:
    """The pass total of `chunk_sums` as the statistic's sum over the rows (float64): streamed statistics get their
    probe-independent terms from the row sums (`score.streamed_finish`), the others are as is."""
    total = np.asarray(total, dtype=np.float64)
    if not _streamed(score, statistic, order):
        return total
    as_t = [torch.as_tensor(p, dtype=torch.float64) for p in probes]
    m = probes[0].shape[1]
    weighted_xx = None if sums.weighted_xx is None else torch.as_tensor(sums.weighted_xx, dtype=torch.float64)
    out = score.streamed_finish(statistic, torch.as_tensor(total).reshape(-1, m), as_t,
                                torch.as_tensor(sums.weighted_x, dtype=torch.float64), float(sums.weight_sum),
                                weighted_xx)
    return out.numpy().reshape(-1)


def prepare_probes(score, statistic: str, probes: list[torch.Tensor], order: int, raw: bool = False
                   ) -> list[torch.Tensor]:
    """The probes `chunk_sums` takes, once per pass: as given, or a streaming score's `streamed_probes`."""
    return score.streamed_probes(statistic, probes, raw=raw) if _streamed(score, statistic, order) else probes


def chunk_sums(score, statistic: str, X: torch.Tensor, w: torch.Tensor, probes: list[torch.Tensor],
               order: int, raw: bool = False) -> torch.Tensor:
    """The sum over the rows of one chunk behind each statistic (w = centred y), flattened to 1-D; for a score
    that streams the statistic (`score.streams`), the per-chunk part that `finish_sums` completes (`raw`: without
    any mean term, when the row sums hold sum w x x^T); `probes` come from `prepare_probes`.

    "contract": sum_r w_r S(x_r)(I, v, ..., v) per column v; "pairs": sum_r w_r S3(x_r)(I, u_i, w_i);
    "project": sum_r w_r S(x_r)(Q, ..., Q); "image": sum_r w_r S(x_r)(I, Q, ..., Q);
    "row_norm_sq": sum_r ||w_r S(x_r)(I, v, ..., v)||^2 per column v.
    """
    if _streamed(score, statistic, order):
        out = score.streamed_chunk(statistic, X, w, probes, raw=raw)
    elif statistic == "contract":
        out = score.contract_chunk(X, w, probes[0], order)
    elif statistic == "pairs":
        out = score.contract_pairs_chunk(X, w, probes[0], probes[1])
    elif statistic == "project":
        out = score.project_chunk(X, w, probes[0], order)
    elif statistic == "image":
        out = score.image_chunk(X, w, probes[0], order)
    elif statistic == "row_norm_sq":
        # contract_rows is (rows, d, m): take the rows in pieces of about _ROW_TERMS_PER_PIECE numbers.
        step = max(1, _ROW_TERMS_PER_PIECE // (X.shape[1] * probes[0].shape[1]))
        out = sum((score.contract_rows(X[i:i + step], w[i:i + step], probes[0], order) ** 2).sum(dim=(0, 1))
                  for i in range(0, X.shape[0], step))
    else:
        raise ValueError(f"unknown statistic {statistic!r}")
    return out.reshape(-1)


class CrossMoment:
    """The operator T = E[(y - mean(y)) · S_order(x)] over the rows of (X, y).

    X is anything `as_row_source` reads: a numpy array, a memmap, a torch tensor, a Dask array (blocks computed
    one at a time), a `RowSource`, or a function returning a fresh iterator of (X_chunk, y_chunk) pairs (then
    y is None). Peak memory is set by `chunk_rows` (and a Dask array's row blocks), not by the number of rows.
    Centring y leaves T unchanged (E[S_m(x)] = 0 for m >= 1) and removes the intercept's variance.
    `contract(V)` returns T(I, v, ..., v) per column, `contract_pairs(U, W)` returns T(I, u, w) (order 3),
    `project(Q)` returns the dense k^order tensor T(Q, ..., Q), `contract_image(Q)` the (d,) + (k,)*(order-1)
    tensor T(I, Q, ..., Q) (the score's `image_chunk` if it has one, else `contract` on polarization probes,
    see `nnlift.tensor.image`). Each call is one pass over the rows; `passes` counts them. Construction reads
    the rows once (row count, NaN/inf check, mean of y, the `RowSums` in `sums`); the score must already be
    fitted (`score.fit(X)`) or is fitted here on the same rows (a Gaussian one from those sums when d <= 256:
    then only its Mardia check reads the rows again).
    """

    def __init__(self, X, y=None, order: int = 3, score="gaussian", *, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                 device=None, dtype=None):
        self.order = check_order(order)
        self.source = as_row_source(X, y)
        self.chunk_rows = int(chunk_rows)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.sums = self._check_rows()
        self.y_mean = self.sums.y_mean
        self.n_samples, self.dim = self.source.shape
        self.score = get_score(score)
        if not self.score.is_fitted:
            fit_score(self.score, self.source.features(), self.chunk_rows, self.sums)
        self.passes = 0

    def _check_rows(self) -> RowSums:
        """One pass: every value finite, y present; the mean of y and the `RowSums` of the centred
        w = y - mean(y) (float64; the probe-independent terms of the streamed statistics)."""
        y_sum, x_sum, yx_sum, xx_sum, yxx_sum = 0.0, 0.0, 0.0, 0.0, 0.0
        with suggest_smaller_chunks(self.chunk_rows):
            for start, X_chunk, y_chunk in iter_row_chunks(self.source, None, self.chunk_rows, native=True):
                if y_chunk is None:
                    raise ValueError("y is required: pass y, or a source that yields (X_chunk, y_chunk) pairs")
                X_t = to_tensor(X_chunk, self.device, self.dtype)
                check_finite_chunk(X_t, "X", start)
                y_t = to_tensor(y_chunk, self.device, torch.float64)
                check_finite_chunk(y_t, "y", start)
                X_t = X_t.to(torch.float64)
                y_sum += float(y_t.sum())
                x_sum = x_sum + X_t.sum(dim=0)
                yx_sum = yx_sum + X_t.T @ y_t
                if X_t.shape[1] <= SECOND_MOMENT_MAX_DIM:
                    xx_sum = xx_sum + X_t.T @ X_t
                    yxx_sum = yxx_sum + X_t.T @ (y_t[:, None] * X_t)
        second = (xx_sum, yxx_sum) if torch.is_tensor(xx_sum) else None
        return centred_sums(y_sum, x_sum, yx_sum, self.source.n_rows, second, torch.finfo(self.dtype).eps)

    def _chunks(self, chunk_rows: int):
        for _, X_chunk, y_chunk in iter_row_chunks(self.source, None, chunk_rows, native=True):
            yield (as_read_only_tensor(X_chunk, self.device, self.dtype),
                   as_read_only_tensor(y_chunk, self.device, self.dtype) - self.y_mean)

    def _mean(self, statistic: str, probes: list[np.ndarray], rows: int | None = None) -> np.ndarray:
        """The mean of `chunk_sums` over all rows (one pass, counted) or over the first `rows` rows.

        A pass that fails (a source error, a changed row count, out of memory) leaves the operator unchanged.
        """
        probes_t = prepare_probes(self.score, statistic,
                                  [torch.as_tensor(p, dtype=self.dtype, device=self.device) for p in probes],
                                  self.order, raw=self.sums.raw)
        limit = self.n_samples if rows is None else min(rows, self.n_samples)
        total, seen = None, 0
        with suggest_smaller_chunks(self.chunk_rows):
            for X_t, w in self._chunks(min(self.chunk_rows, limit)):
                X_t, w = X_t[:limit - seen], w[:limit - seen]
                part = chunk_sums(self.score, statistic, X_t, w, probes_t, self.order, raw=self.sums.raw)
                total = part if total is None else total + part
                seen += X_t.shape[0]
                if rows is not None and seen == limit:
                    break
        total = finish_sums(self.score, statistic, total.to(torch.float64).cpu().numpy(), probes, self.order,
                            self.sums)
        if rows is None:
            self.passes += 1
        return total / limit

    def _probes(self, V) -> np.ndarray:
        V = np.ascontiguousarray(V, dtype=np.float64)
        if V.ndim != 2 or V.shape[0] != self.dim:
            raise ValueError(f"probes must have shape ({self.dim}, m), got {V.shape}")
        return V

    def contract(self, V) -> np.ndarray:
        """T(I, v, ..., v) for each column v of V (d x m): one pass, O(n d m) work."""
        V = self._probes(V)
        return self._mean("contract", [V]).reshape(V.shape)

    def contract_pairs(self, U, W) -> np.ndarray:
        """T(I, u_i, w_i) for column pairs of U and W (order 3 only)."""
        if self.order != 3:
            raise ValueError("contract_pairs is defined for the third-order moment only")
        U, W = self._probes(U), self._probes(W)
        return self._mean("pairs", [U, W]).reshape(U.shape)

    def project(self, Q) -> np.ndarray:
        """The dense projected tensor T(Q, ..., Q), shape (k,)*order for Q of shape (d, k)."""
        Q = self._probes(Q)
        return self._mean("project", [Q]).reshape((Q.shape[1],) * self.order)

    def contract_image(self, Q) -> np.ndarray:
        """T(I, Q, ..., Q), shape (d,) + (k,)*(order-1) for Q of shape (d, k): one pass (orders 3 and 4)."""
        Q = self._probes(Q)
        if self.order not in (3, 4):
            raise ValueError(f"contract_image is defined for orders 3 and 4, the moment has order {self.order}")
        if hasattr(self.score, "image_chunk"):
            return self._mean("image", [Q]).reshape((self.dim,) + (Q.shape[1],) * (self.order - 1))
        return from_polarization(self.contract(polarization_probes(Q, self.order)), Q.shape[1], self.order)

    def row_norm_sq(self, V, max_rows: int = 2000) -> np.ndarray:
        """Mean over (at most `max_rows`) first rows of ||y_r S(x_r)(I, v, ..., v)||^2 per column v.

        The per-row variance of the contraction: the standard error of `contract(V)` on n rows is about
        sqrt(row_norm_sq / n), which is what the sample-size diagnostic uses.
        """
        return self._mean("row_norm_sq", [self._probes(V)], rows=max_rows)


def centred_sums(y_sum, x_sum, yx_sum, n: int, second=None, eps: float = 2.0**-23) -> RowSums:
    """`RowSums` from the raw sums of y, x, y x and, optionally, second = (sum x x^T, sum y x x^T).

    The raw streamed kernel works on uncentred rows, so its mean terms cancel: a feature whose mean is rho of its
    standard deviations away from 0 costs about (1 + rho)^2 in relative rounding. sum w x x^T is kept (and the raw
    kernel used) only while (1 + rho)^2 * eps <= RAW_MAX_ROUNDING for the working precision `eps`.
    """
    y_mean = float(y_sum) / n

    def as_array(value):
        return np.asarray(torch.as_tensor(value).cpu(), dtype=np.float64)

    x_sum = as_array(x_sum)
    weighted_xx, column_sums = None, None
    if second is not None:
        xx_sum = as_array(second[0])
        column_sums = (x_sum, xx_sum)
        mean = x_sum / n
        variance = np.maximum(np.diag(xx_sum) / n - mean**2, np.finfo(float).tiny)
        offset = float(np.max(np.abs(mean) / np.sqrt(variance)))
        if (1.0 + offset) ** 2 * eps <= RAW_MAX_ROUNDING:
            weighted_xx = as_array(second[1]) - y_mean * xx_sum
    return RowSums(y_mean, as_array(yx_sum) - y_mean * x_sum, float(y_sum) - n * y_mean, weighted_xx, column_sums)


def fit_score(score, features, chunk_rows: int, sums: RowSums) -> None:
    """Fit an unfitted score on the rows; a Gaussian one takes its mean and covariance from the construction
    pass's column sums when there are any (one pass fewer)."""
    if isinstance(score, GaussianScore) and sums.column_sums is not None:
        score.fit(features, chunk_rows=chunk_rows, column_sums=sums.column_sums)
    else:
        score.fit(features, chunk_rows=chunk_rows)


def make_moment(X, y=None, order: int = 3, score="gaussian", *, client=None, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                device=None, dtype=None) -> CrossMoment:
    """A `CrossMoment` streamed here, or, given a `distributed.Client`, a `DaskCrossMoment` run on its cluster."""
    if client is None:
        return CrossMoment(X, y, order, score, chunk_rows=chunk_rows, device=device, dtype=dtype)
    from .distributed import DaskCrossMoment

    return DaskCrossMoment(X, y, order, score, client=client, chunk_rows=chunk_rows, device=device, dtype=dtype)
