"""Torch device/dtype choice, array conversion and row-chunk iteration: the one place for them."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

DEFAULT_CHUNK_ROWS = 16384


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


def iter_row_chunks(X, y=None, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[tuple[int, object, object]]:
    """Yield (start, X[start:stop], y[start:stop]) over rows; works for arrays, memmaps and tensors."""
    n = X.shape[0]
    for start in range(0, n, chunk_rows):
        stop = min(start + chunk_rows, n)
        yield start, X[start:stop], (None if y is None else y[start:stop])


def check_finite_chunk(values: torch.Tensor, name: str, start: int) -> None:
    """Raise a ValueError naming the first non-finite row of a chunk that begins at row `start`."""
    bad = ~torch.isfinite(values)
    if bad.any():
        row = int(torch.nonzero(bad.reshape(values.shape[0], -1).any(dim=1))[0, 0]) + start
        raise ValueError(f"{name} contains NaN or inf at row {row}; remove or impute such rows before fitting")
