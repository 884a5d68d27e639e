"""The cross-moment passes as map-reduce on a Dask cluster: map (row block -> partial sums), reduce (add).

`DaskCrossMoment` is a `CrossMoment` whose rows live on the workers of a `distributed.Client` (the user's
cluster, or `local_client()`); `nnlift.moments.make_moment(X, y, ..., client=client)` builds one. Results equal
the in-memory operator's up to float rounding (the sums are only grouped differently).
"""

from __future__ import annotations

from functools import partial

import dask
import dask.array as da
import numpy as np
import torch
from distributed import Client

from ._backend import (
    DEFAULT_CHUNK_ROWS,
    DaskSource,
    as_read_only_tensor,
    is_dask_collection,
    resolve_device,
    resolve_dtype,
    suggest_smaller_chunks,
)
from .moments import (
    SECOND_MOMENT_MAX_DIM,
    CrossMoment,
    RowSums,
    centred_sums,
    check_order,
    chunk_sums,
    finish_sums,
    fit_score,
    prepare_probes,
    statistic_size,
)
from .scores import get_score

__all__ = ["DaskCrossMoment", "local_client"]


def local_client(n_workers: int = 2, *, threads_per_worker: int = 1, processes: bool = True,
                 dashboard_address: str = ":0", **kwargs) -> Client:
    """A Client on a new `LocalCluster` of `n_workers` workers that is shut down with the client.

    Use it as `with local_client(4) as client: ...`; other keyword arguments go to `LocalCluster`. The dashboard
    takes a free port (":0") so that several clusters can run side by side.
    """
    return Client(n_workers=n_workers, threads_per_worker=threads_per_worker, processes=processes,
                  dashboard_address=dashboard_address, **kwargs)


def _block_sums(X, y, score, *probes, statistic: str, order: int, y_mean: float, size: int, chunk_rows: int,
                device, dtype, raw: bool) -> np.ndarray:
    """Map step on a worker: the sum of `chunk_sums` over one row block, cut into `chunk_rows` pieces: (1, size)."""
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    probes_t = prepare_probes(score, statistic, [torch.as_tensor(p, dtype=dtype, device=device) for p in probes],
                              order, raw=raw)
    total = torch.zeros(size, dtype=dtype, device=device)
    with suggest_smaller_chunks(chunk_rows):
        for start in range(0, X.shape[0], chunk_rows):
            X_t = as_read_only_tensor(X[start:start + chunk_rows], device, dtype)
            w = as_read_only_tensor(y[start:start + chunk_rows], device, dtype) - y_mean
            total += chunk_sums(score, statistic, X_t, w, probes_t, order, raw=raw)
    return total.to(torch.float64).cpu().numpy()[None]


class DaskCrossMoment(CrossMoment):
    """`CrossMoment` whose passes are map-reduce tasks on the cluster behind `client`.

    X (n, d) and y (n,) are Dask arrays (other arrays are split into blocks of `chunk_rows` rows); they are
    persisted on the workers once, with the score. Each call maps one task per row block (the score's chunk
    statistic on centred y, in pieces of `chunk_rows` rows) and sums the partial results in a tree of
    `split_every` at a time; the probe matrix enters the task graph once per call. A lost worker is survived:
    Dask recomputes its blocks and partial sums from the graph. An unfitted `GaussianScore` is fitted by
    map-reduce on the cluster; other scores stream the blocks through the client. `device`/`dtype` are resolved
    on each worker (None: the worker's GPU if it has one). Workers must be able to import nnlift.
    """

    def __init__(self, X, y, order: int = 3, score="gaussian", *, client: Client,
                 chunk_rows: int = DEFAULT_CHUNK_ROWS, device=None, dtype=None, split_every: int = 8):
        self.order = check_order(order)
        self.client = client
        self.chunk_rows = int(chunk_rows)
        self.split_every = int(split_every)
        self.device, self.dtype = device, dtype
        if not is_dask_collection(X):
            X = da.from_array(np.asarray(X), chunks=(self.chunk_rows, -1))
        source = DaskSource(X, y)
        if source.y is None:
            raise ValueError("y is required for a DaskCrossMoment")
        self.X, self.y = client.persist([source.X, source.y])
        self.source = DaskSource(self.X, self.y, scheduler=client)
        self.n_samples, self.dim = self.source.shape
        self.sums = self._check_rows()
        self.y_mean = self.sums.y_mean
        self.score = get_score(score)
        if not self.score.is_fitted:
            fit_score(self.score, self.source.features(), self.chunk_rows, self.sums)
        self._score = client.persist(dask.delayed(self.score))
        self.passes = 0

    def _check_rows(self) -> RowSums:
        """On the cluster: every value finite; the mean of y and the centred sums (see `CrossMoment._check_rows`)."""
        bad_X = ~da.isfinite(self.X).all(axis=1)
        bad_y = ~da.isfinite(self.y)
        X64, y64 = self.X.astype(np.float64), self.y.astype(np.float64)
        second = [X64.T @ X64, X64.T @ (X64 * y64[:, None])] if self.dim <= SECOND_MOMENT_MAX_DIM else []
        any_X, row_X, any_y, row_y, y_sum, x_sum, yx_sum, *second = self.client.compute(
            [bad_X.any(), bad_X.argmax(), bad_y.any(), bad_y.argmax(), y64.sum(), X64.sum(axis=0), y64 @ X64,
             *second], sync=True)
        bounds = np.cumsum((0,) + self.X.chunks[0])
        for name, bad, row in (("X", any_X, row_X), ("y", any_y, row_y)):
            if bad:
                block = int(np.searchsorted(bounds, row, side="right")) - 1
                raise ValueError(f"{name} contains NaN or inf at row {row} (in the chunk of rows {bounds[block]}-"
                                 f"{bounds[block + 1] - 1}); remove or impute such rows before fitting")
        # the working dtype is resolved on each worker (None: float32 on a GPU), so assume float32 unless asked
        eps = torch.finfo(torch.float32 if self.dtype is None else resolve_dtype(self.dtype, torch.device("cpu"))).eps
        return centred_sums(y_sum, x_sum, yx_sum, self.n_samples, second or None, eps)

    def _mean(self, statistic: str, probes: list[np.ndarray], rows: int | None = None) -> np.ndarray:
        """The mean of `chunk_sums` over all rows (one pass, counted) or the first `rows`, as one Dask reduction."""
        X, y = (self.X, self.y) if rows is None else (self.X[:rows], self.y[:rows])
        size = statistic_size(self.score, statistic, probes, self.order, raw=self.sums.raw)
        map_step = partial(_block_sums, statistic=statistic, order=self.order, y_mean=self.y_mean, size=size,
                           chunk_rows=self.chunk_rows, device=self.device, dtype=self.dtype, raw=self.sums.raw)
        probe_args = [a for p in probes for a in (dask.delayed(p), None)]
        parts = da.blockwise(map_step, "bi", X, "bj", y, "b", self._score, None, *probe_args,
                             new_axes={"i": size}, adjust_chunks={"b": 1}, concatenate=True,
                             meta=np.empty((0, 0)))
        total = self.client.compute(parts.sum(axis=0, split_every=self.split_every), sync=True)
        total = finish_sums(self.score, statistic, total, probes, self.order, self.sums)
        if rows is None:
            self.passes += 1
        return total / X.shape[0]
