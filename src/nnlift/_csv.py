"""CSV tables read in chunks straight into float64 arrays: memory is the arrays plus one chunk of text.

Rows are numbered from 1, the first row after the header; the file line is given too. Blank lines are skipped.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["read_header", "read_table"]

CHUNK_ROWS = 8192


def read_header(path: str | Path) -> list[str]:
    """The column names in the first row of a CSV file, each there once."""
    with open(path, newline="") as handle:
        header = next(csv.reader(handle), [])
    if not header:
        raise ValueError(f"{path} is empty: it needs a header row of column names")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise ValueError(f"{path}: the header names column(s) {repeated} more than once")
    return header


def _row_bound(path: str | Path) -> int:
    """An upper bound on the data rows of a file with \\n or \\r\\n line ends: its number of \\n."""
    with open(path, "rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))


@dataclass
class _Chunk:
    """Up to CHUNK_ROWS data rows of a file, after `start` earlier ones, with the file line each ends on."""

    path: str | Path
    start: int
    rows: list[list[str]]
    lines: list[int]

    def where(self, i: int) -> str:
        return f"{self.path}: row {self.start + i + 1} (line {self.lines[i]})"


def _chunks(path: str | Path, width: int) -> Iterator[_Chunk]:
    """The data rows in chunks; a row without `width` fields is a ValueError."""
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        chunk = _Chunk(path, 0, [], [])
        for row in reader:
            if not row:
                continue
            if len(row) != width:
                raise ValueError(f"{path}: row {chunk.start + len(chunk.rows) + 1} (line {reader.line_num}) has "
                                 f"{len(row)} fields; the header has {width}")
            chunk.rows.append(row)
            chunk.lines.append(reader.line_num)
            if len(chunk.rows) == CHUNK_ROWS:
                yield chunk
                chunk = _Chunk(path, chunk.start + CHUNK_ROWS, [], [])
        if chunk.rows:
            yield chunk


def _is_finite(cell: str) -> bool:
    try:
        return math.isfinite(float(cell))
    except ValueError:
        return False


def _describe(cell: str) -> str:
    return repr(cell) if cell.strip() else "empty"


def _floats(chunk: _Chunk, columns: list[int], names: list[str], role: str) -> np.ndarray:
    """The chunk's `columns` as float64; the first cell that is not a finite number is a ValueError."""
    cells = [[row[c] for c in columns] for row in chunk.rows]
    try:
        block = np.array(cells, dtype=np.float64)
        if np.isfinite(block).all():
            return block
    except ValueError:
        pass
    i, j = next((i, j) for i, row in enumerate(cells) for j, cell in enumerate(row) if not _is_finite(cell))
    raise ValueError(f"{chunk.where(i)}, column {names[j]!r} is {_describe(cells[i][j])}; every {role} cell must "
                     "be a finite number")


def _labels(chunk: _Chunk, column: int, name: str) -> np.ndarray:
    """The chunk's `column` as class labels (strings); an empty one is a ValueError."""
    cells = [row[column] for row in chunk.rows]
    empty = next((i for i, cell in enumerate(cells) if not cell.strip()), None)
    if empty is not None:
        raise ValueError(f"{chunk.where(empty)}, column {name!r} is empty; every row needs a class label")
    return np.array(cells, dtype=str)


def _target(chunk: _Chunk, column: int, name: str, text: bool) -> np.ndarray:
    """The chunk's target column: class labels (strings) with `text`, else finite float64 numbers."""
    return _labels(chunk, column, name) if text else _floats(chunk, [column], [name], "target")[:, 0]


def _grown(array: np.ndarray, rows: int) -> np.ndarray:
    """`array` with room for at least `rows` rows (a copy; only when the line count underestimated the rows)."""
    bigger = np.empty((max(rows, 2 * len(array)), *array.shape[1:]), dtype=array.dtype)
    bigger[:len(array)] = array
    return bigger


def read_table(path: str | Path, features: list[str], target: str | None = None, *,
               text_target: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """The `features` columns as an (n, p) float64 array and the `target` column (float64, or str with
    `text_target`; None without a target).

    Every feature and numeric target cell must be a finite number and every text label non-empty: the first cell
    that is not is a ValueError naming its row, line and column.
    """
    header = read_header(path)
    wanted = [*features, *([] if target is None else [target])]
    missing = [name for name in wanted if name not in header]
    if missing:
        raise ValueError(f"{path} has no column(s) {missing} (its columns: {', '.join(header)})")
    columns = [header.index(name) for name in features]
    X = np.empty((_row_bound(path), len(features)))
    targets = []
    n = 0
    for chunk in _chunks(path, len(header)):
        stop = n + len(chunk.rows)
        if stop > len(X):
            X = _grown(X, stop)
        X[n:stop] = _floats(chunk, columns, features, "feature")
        if target is not None:
            targets.append(_target(chunk, header.index(target), target, text_target))
        n = stop
    if n == 0:
        raise ValueError(f"{path} has a header but no data rows")
    return X[:n], (np.concatenate(targets) if targets else None)
