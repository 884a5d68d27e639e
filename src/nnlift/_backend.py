"""Torch device/dtype choice, array conversion and row-chunk iteration: the one place for them.

Every statistic is a sum over rows, read one chunk at a time from a `RowSource`: in-memory or memory-mapped
arrays and torch tensors (`ArraySource`), Dask arrays (`DaskSource`, one block computed at a time) or a
function returning a fresh iterator of (X_chunk, y_chunk) pairs (`ChunkSource`). `iter_row_chunks` is the one
loop over them; it checks widths and row counts, so a source that changes between passes is refused.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch

DEFAULT_CHUNK_ROWS = 16384

_OUT_OF_MEMORY = ("out of memory", "can't allocate memory", "not enough memory")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`None`/"auto" -> CUDA when present, else CPU; anything else is passed to `torch.device`."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but no CUDA device is available; use device='cpu'")
    return device


def resolve_dtype(dtype, device: torch.device) -> torch.dtype:
    """float64 on the CPU and float32 on a GPU unless asked otherwise ("float32"/"float64" or torch dtypes)."""
    if dtype is None:
        return torch.float64 if device.type == "cpu" else torch.float32
    if dtype in ("float32", np.float32, torch.float32):
        return torch.float32
    if dtype in ("float64", np.float64, torch.float64):
        return torch.float64
    raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")


def to_tensor(a, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A torch tensor on `device` with `dtype`; copies so the caller's array is never touched."""
    if isinstance(a, torch.Tensor):
        return a.detach().to(device=device, dtype=dtype, copy=True)
    return torch.as_tensor(np.array(a, dtype=np.float64 if dtype == torch.float64 else np.float32),
                           device=device)


def as_read_only_tensor(a, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A tensor view of a chunk for reading only: no copy when a CPU array already has `dtype` and is C-ordered.

    The moment kernels never write to their inputs, so the copy `to_tensor` makes is pure cost on the row pass
    (a third of a pass at d=500, benchmarks/bench_moments.py). Callers must not modify the result in place.
    """
    if isinstance(a, torch.Tensor):
        return a.detach().to(device=device, dtype=dtype)
    array = np.ascontiguousarray(a, dtype=np.float64 if dtype == torch.float64 else np.float32)
    with warnings.catch_warnings():  # read-only memmaps: torch warns that the view is not writable
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array).to(device=device)


def is_dask_collection(a) -> bool:
    """True for Dask arrays (anything with a Dask graph), without importing Dask."""
    return hasattr(a, "__dask_graph__")


def _check_shapes(X, y) -> None:
    """X must be 2-D and y, when given, 1-D with one entry per row of X."""
    if len(X.shape) != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {tuple(X.shape)}")
    if y is not None and (len(y.shape) != 1 or y.shape[0] != X.shape[0]):
        raise ValueError(f"y must be 1-D with {X.shape[0]} entries to match X, got shape {tuple(y.shape)}")


class RowSource:
    """Rows of X (n, d), with targets y (n,) or without, readable any number of times in row order.

    Subclasses implement `_blocks(chunk_rows)`, an iterator of consecutive (X_block, y_block) pairs of any
    size; `iter_row_chunks` cuts them to `chunk_rows` and checks them. `n_rows` is None until a first pass
    has counted the rows (only for `ChunkSource`).
    """

    ndim = 2

    def __init__(self, n_rows: int | None, n_features: int | None):
        self.n_rows, self.n_features = n_rows, n_features

    @property
    def shape(self) -> tuple[int, int]:
        """(n_rows, n_features); reading it before any pass of a `ChunkSource` costs one counting pass."""
        if self.n_rows is None:
            for _ in iter_row_chunks(self):
                pass
        return self.n_rows, self.n_features

    def features(self) -> RowSource:
        """The same rows without y, for passes that read X only."""
        return self

    def _blocks(self, chunk_rows: int) -> Iterator[tuple[object, object]]:
        raise NotImplementedError


class ArraySource(RowSource):
    """Rows sliced from arrays: numpy, `np.load(..., mmap_mode="r")` memmaps, torch tensors (any device)."""

    def __init__(self, X, y=None):
        if not hasattr(X, "shape"):
            X = np.asarray(X)
        if y is not None and not hasattr(y, "shape"):
            y = np.asarray(y)
        _check_shapes(X, y)
        super().__init__(int(X.shape[0]), int(X.shape[1]))
        self.X, self.y = X, y

    def features(self) -> ArraySource:
        return ArraySource(self.X)

    def _blocks(self, chunk_rows: int):
        for start in range(0, self.n_rows, chunk_rows):
            stop = start + chunk_rows
            yield self.X[start:stop], (None if self.y is None else self.y[start:stop])


class DaskSource(RowSource):
    """Rows of Dask arrays, one row block computed at a time (by `scheduler`, e.g. a Client, or Dask's default).

    Peak memory is one block of X plus the per-chunk work; rechunk X along rows to bound it.
    """

    def __init__(self, X, y=None, *, scheduler=None):
        import dask.array as da

        X = da.asarray(X)
        y = None if y is None else da.asarray(y)
        if any(np.isnan(c) for a in (X, y) if a is not None for c in a.chunks[0]):
            raise ValueError("X or y has unknown chunk sizes; call .compute_chunk_sizes() on it first")
        _check_shapes(X, y)
        X = X.rechunk({1: -1})
        y = None if y is None else y.rechunk((X.chunks[0],))
        super().__init__(int(X.shape[0]), int(X.shape[1]))
        self.X, self.y, self.scheduler = X, y, scheduler

    def features(self) -> DaskSource:
        return DaskSource(self.X, scheduler=self.scheduler)

    def _blocks(self, chunk_rows: int):
        import dask

        for i in range(self.X.numblocks[0]):
            if self.y is None:
                yield dask.compute(self.X.blocks[i], scheduler=self.scheduler)[0], None
            else:
                yield dask.compute(self.X.blocks[i], self.y.blocks[i], scheduler=self.scheduler)


class ChunkSource(RowSource):
    """Rows from `make_chunks()`, a function returning a fresh iterator of (X_chunk, y_chunk) pairs per pass.

    Every pass must yield the same rows; y_chunk may be None for an X-only source.
    """

    def __init__(self, make_chunks: Callable[[], Iterator]):
        if not callable(make_chunks):
            raise TypeError(f"make_chunks must be a function returning an iterator, got {type(make_chunks).__name__}")
        super().__init__(None, None)
        self.make_chunks = make_chunks

    def _blocks(self, chunk_rows: int):
        yield from self.make_chunks()


def as_row_source(X, y=None) -> RowSource:
    """The `RowSource` behind X (and y): a source as is, a function as a `ChunkSource`, Dask or plain arrays."""
    if isinstance(X, RowSource):
        if y is not None:
            raise ValueError("y must be None when X is a RowSource: the source yields the targets")
        return X
    if isinstance(X, Iterator):
        raise TypeError("a one-shot iterator cannot be read several times; pass a function that returns a fresh "
                        "iterator of (X_chunk, y_chunk) pairs, or a ChunkSource")
    if callable(X) and not hasattr(X, "shape"):
        if y is not None:
            raise ValueError("y must be None when X is a function: its chunks are (X_chunk, y_chunk) pairs")
        return ChunkSource(X)
    if is_dask_collection(X) or is_dask_collection(y):
        return DaskSource(X, y)
    return ArraySource(X, y)


def _host(a):
    """A torch tensor as a numpy array (zero-copy on the CPU); anything else unchanged."""
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a


def _next_block(blocks, start: int):
    """The next (X_block, y_block) of a source, or None at its end; a failing source raises a RuntimeError."""
    try:
        return next(blocks)
    except StopIteration:
        return None
    except MemoryError:
        raise
    except Exception as exc:
        raise RuntimeError(f"the row source failed after {start} rows ({type(exc).__name__}: {exc}); the pass "
                           "was abandoned and no result was produced") from exc


def _check_block(source: RowSource, block, start: int) -> int:
    """Rows in a block after checking its width and its y; the first block of a `ChunkSource` sets the width."""
    if not (isinstance(block, tuple | list) and len(block) == 2):
        raise TypeError(f"a row source must yield (X_chunk, y_chunk) pairs, got {type(block).__name__}")
    X_block, y_block = block
    shape = tuple(X_block.shape)
    if len(shape) != 2:
        raise ValueError(f"the chunk at row {start} has shape {shape}; chunks of X must be 2-D")
    if source.n_features is None:
        source.n_features = shape[1]
    if shape[1] != source.n_features:
        raise ValueError(f"the chunk at row {start} has {shape[1]} columns but earlier chunks have "
                         f"{source.n_features}; every chunk must have the same features")
    if y_block is not None and tuple(y_block.shape) != shape[:1]:
        raise ValueError(f"the y chunk at row {start} has shape {tuple(y_block.shape)}, expected ({shape[0]},) "
                         "to match its X chunk")
    return shape[0]


def iter_row_chunks(X, y=None, chunk_rows: int = DEFAULT_CHUNK_ROWS, *, native: bool = False
                    ) -> Iterator[tuple[int, object, object]]:
    """Yield (start, X_chunk, y_chunk), at most `chunk_rows` rows each, over one pass of `as_row_source(X, y)`.

    Chunks are numpy arrays (torch tensors are moved to the host) unless `native`, which keeps torch tensors
    where they are. A pass yielding more or fewer rows than the first one raises a RuntimeError.
    """
    source = as_row_source(X, y)
    chunk_rows = int(chunk_rows)
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows}")
    blocks = source._blocks(chunk_rows)
    start = 0
    while (block := _next_block(blocks, start)) is not None:
        rows = _check_block(source, block, start)
        X_block, y_block = block
        if source.n_rows is not None and start + rows > source.n_rows:
            raise RuntimeError(f"the row source yielded more than the {source.n_rows} rows of its first pass; "
                               "it must yield the same rows on every pass")
        for offset in range(0, rows, chunk_rows):
            X_chunk = X_block[offset:offset + chunk_rows]
            y_chunk = None if y_block is None else y_block[offset:offset + chunk_rows]
            yield start + offset, (X_chunk if native else _host(X_chunk)), (y_chunk if native else _host(y_chunk))
        start += rows
    if start == 0:
        raise ValueError("the row source yielded no rows")
    if source.n_rows is None:
        source.n_rows = start
    elif start != source.n_rows:
        raise RuntimeError(f"the row source ended after {start} rows but has {source.n_rows}; it must yield the "
                           "same rows on every pass (was a file truncated or an iterator reused?)")


def check_finite_chunk(values: torch.Tensor, name: str, start: int) -> None:
    """Raise a ValueError naming the first non-finite row of a chunk that begins at row `start`."""
    bad = ~torch.isfinite(values)
    if bad.any():
        row = int(torch.nonzero(bad.reshape(values.shape[0], -1).any(dim=1))[0, 0]) + start
        raise ValueError(f"{name} contains NaN or inf at row {row} (in the chunk of rows {start}-"
                         f"{start + values.shape[0] - 1}); remove or impute such rows before fitting")


@contextmanager
def suggest_smaller_chunks(chunk_rows: int):
    """Re-raise running out of memory in per-chunk work as a MemoryError that suggests a smaller `chunk_rows`."""
    try:
        yield
    except (MemoryError, RuntimeError) as exc:
        if not isinstance(exc, MemoryError | torch.cuda.OutOfMemoryError) and not any(
                text in str(exc) for text in _OUT_OF_MEMORY):
            raise
        raise MemoryError(f"out of memory while working on chunks of {chunk_rows} rows; pass a smaller chunk_rows "
                          f"(e.g. chunk_rows={max(chunk_rows // 8, 1)}), and for a Dask array smaller row blocks "
                          f"({type(exc).__name__}: {exc})") from exc


def is_out_of_core(X) -> bool:
    """True for inputs the estimators stream rather than load: Dask arrays, torch tensors and memmaps."""
    return is_dask_collection(X) or isinstance(X, torch.Tensor | np.memmap)


def take_rows(a, rows: np.ndarray) -> np.ndarray:
    """The given (sorted) rows of an array, memmap, torch tensor or Dask array, as a float64 numpy array."""
    picked = a[rows]
    if is_dask_collection(picked):
        picked = picked.compute()
    return np.asarray(_host(picked), dtype=np.float64)


def sample_rows(X, max_rows: int, random_state=None, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> np.ndarray:
    """At most `max_rows` rows of any row source (a seeded subset, in row order) as float64 numpy, checked finite.

    Streams one pass, so it works for Dask arrays and chunk functions as well as arrays.
    """
    source = as_row_source(X, None)
    n = source.shape[0]
    rng = np.random.default_rng(random_state)
    keep = np.arange(n) if n <= max_rows else np.sort(rng.choice(n, size=max_rows, replace=False))
    parts = []
    for start, chunk, _ in iter_row_chunks(source, None, chunk_rows):
        chunk = np.asarray(chunk, dtype=np.float64)
        wanted = keep[(keep >= start) & (keep < start + chunk.shape[0])] - start
        if wanted.size:
            picked = chunk[wanted]
            if not np.all(np.isfinite(picked)):
                row = start + int(wanted[~np.all(np.isfinite(picked), axis=1)][0])
                raise ValueError(f"X has NaN or inf at row {row}; clean or impute it before fitting a score")
            parts.append(picked)
    return np.concatenate(parts, axis=0)
