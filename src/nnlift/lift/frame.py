"""The estimators' inner coordinates: whitened inputs and standardised targets, mapped back to the user's units.

NN-LIFT's guarantee is stated for whitened inputs (Janzamin, Sedghi, Anandkumar 2015, Sec. 3: the tensor
decomposition needs the components to be well conditioned, and the scale/bias step assumes unit-variance
pre-activations). The estimators therefore fit in the frame z = (x - mean) @ x_map, t = (y - y_mean) / y_scale
and report the weights in the user's units: w_user = x_map @ w, b_user = b - mean @ x_map @ w,
c_user = y_scale * c, c0_user = y_scale * c0 + y_mean. Every step (moments, decomposition, scale/bias,
fine-tune) then sees the same numbers whatever the units of X and y, so the fit is affine-equivariant by
construction.

x_map is diag(1 / sd) @ inv(L)^T with L the Cholesky factor of the correlation matrix: a per-feature rescaling
or offset of X changes sd and mean but not the correlation, hence not z ("whiten"); for scores of independent
marginals only the standardisation is applied ("standardize"), which keeps the marginals independent; a score
given already fitted in the user's units leaves X as it is ("identity"). The frame uses the sample mean and
covariance for every score family: they are all the frame needs to be equivariant, they stream in one pass, and
the heavy-tailed families nnlift fits (Student-t with df > 2, mixtures) have a finite covariance; the score
itself is then fitted on the frame's rows, where a robust fit is the score's own business.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import blas

from .._backend import DEFAULT_CHUNK_ROWS, RowSource, as_row_source, is_dask_collection, iter_row_chunks
from .._training import TwoLayerParams

__all__ = ["Frame", "fit_frame", "frame_kind_for"]

_CONSTANT_RTOL = 1e-12
_MIN_CORRELATION_EIGENVALUE = 1e-10
KINDS = ("whiten", "standardize", "identity")


@dataclass(frozen=True)
class Frame:
    """z = (x - x_mean) @ x_map and t = (y - y_mean) / y_scale; `kind` says which part of x is mapped."""

    x_mean: np.ndarray
    x_map: np.ndarray
    y_mean: float
    y_scale: float
    kind: str
    x_correlation: np.ndarray | None = None

    def features(self, X) -> np.ndarray:
        """Rows of X (an in-memory array, float64 numpy) in the frame; X itself is never modified."""
        X = np.asarray(X, dtype=np.float64)
        if self.kind == "identity":
            return X.copy()
        centred = X - self.x_mean
        if self.kind == "standardize":
            centred *= np.diag(self.x_map)
            return centred
        # x_map is upper triangular; BLAS trmm multiplies in place, 4x faster than a general product at d = 50
        # (numpy and scipy have no triangular product other than this BLAS wrapper).
        return blas.dtrmm(1.0, self.x_map, centred.T, side=0, lower=0, trans_a=1, overwrite_b=1).T

    def targets(self, y) -> np.ndarray:
        return (np.asarray(y, dtype=np.float64) - self.y_mean) / self.y_scale

    def rows(self, X, y=None):
        """(Z, t) for the estimator's passes: in memory for numpy arrays, lazy for Dask arrays, streamed per
        chunk (`FramedSource`) for memmaps and torch tensors. y None gives t None."""
        if is_dask_collection(X):
            import dask.array as da

            X = da.asarray(X).astype(np.float64)
            Z = X if self.kind == "identity" else (X - self.x_mean) @ self.x_map
            t = None if y is None else (da.asarray(y).astype(np.float64) - self.y_mean) / self.y_scale
            return Z, t
        if isinstance(X, torch.Tensor | np.memmap) or isinstance(y, torch.Tensor | np.memmap):
            return FramedSource(as_row_source(X, y), self), None
        return self.features(X), None if y is None else self.targets(y)

    def to_user(self, params: TwoLayerParams, *, output: bool = True) -> TwoLayerParams:
        """Parameters fitted in the frame as parameters of the same function of the user's x (and y if `output`)."""
        first_layer = self.x_map @ params.first_layer
        bias = params.bias - self.x_mean @ first_layer
        coef, intercept = params.coef, params.intercept
        if output:
            coef = self.y_scale * coef
            intercept = self.y_scale * intercept + self.y_mean
        return TwoLayerParams(first_layer, bias, coef, intercept)

    def summary(self) -> dict:
        """What `diagnostics_["frame"]` reports: the kind and the conditioning the whitening removed."""
        condition = None
        if self.x_correlation is not None:
            eigenvalues = np.linalg.eigvalsh(self.x_correlation)
            condition = float(eigenvalues[-1] / eigenvalues[0])
        return {"kind": self.kind, "correlation_condition": condition, "y_mean": self.y_mean,
                "y_scale": self.y_scale}


class FramedSource(RowSource):
    """A row source read through a `Frame`, chunk by chunk (no copy of the rows)."""

    def __init__(self, source: RowSource, frame: Frame):
        super().__init__(source.n_rows, source.n_features)
        self.source, self.frame = source, frame

    def features(self) -> FramedSource:
        return FramedSource(self.source.features(), self.frame)

    def _blocks(self, chunk_rows: int):
        frame = self.frame
        for _, X_chunk, y_chunk in iter_row_chunks(self.source, None, chunk_rows, native=True):
            if isinstance(X_chunk, torch.Tensor):
                X_chunk = X_chunk.detach().to(torch.float64)
                mean = torch.as_tensor(frame.x_mean, device=X_chunk.device)
                x_map = torch.as_tensor(frame.x_map, device=X_chunk.device)
                Z = X_chunk if frame.kind == "identity" else (X_chunk - mean) @ x_map
            else:
                Z = frame.features(X_chunk)
            t = None
            if y_chunk is not None:
                t = (y_chunk.detach().to(torch.float64) if isinstance(y_chunk, torch.Tensor)
                     else np.asarray(y_chunk, dtype=np.float64))
                t = (t - frame.y_mean) / frame.y_scale
            yield Z, t


def frame_kind_for(score) -> str:
    """"whiten" for affine-equivariant score families, "standardize" for independent marginals, "identity" for a
    score already fitted in the user's units (its density is fixed there)."""
    from ..scores import DensityScore, GaussianScore
    from ..scores.densities import _Marginals

    if isinstance(score, str):
        return "standardize" if score in ("student_t", "laplace", "uniform") else "whiten"
    if isinstance(score, GaussianScore):
        return "whiten"
    if getattr(score, "is_fitted", False):
        return "identity"
    if isinstance(score, DensityScore) and isinstance(score.log_prob, _Marginals):
        return "standardize"
    return "whiten"


def fit_frame(X, y=None, *, kind: str = "whiten", standardize_y: bool = True, mean=None, cov=None,
              sample_weight=None, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Frame:
    """The frame of (X, y) from one pass: shifted sums (shift = the first row, so offsets cost no precision) in
    per-column power-of-two units (so values near 1e300 do not overflow when squared), every value checked
    finite; `mean`/`cov` given (an exact Gaussian score) replace the estimates. `sample_weight` (in-memory rows,
    normalised to mean 1) gives the weighted mean and covariance.

    Raises a ValueError naming constant or collinear columns and a constant y: no frame exists for them.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    sums = _shifted_sums(X, y, sample_weight, chunk_rows)
    n, d, unit = sums.n, sums.shift.size, sums.unit
    x_mean = sums.shift + unit * (sums.total / n)
    cov_in_units = (sums.second - np.outer(sums.total, sums.total) / n) / max(n - 1, 1)
    if mean is not None:
        x_mean = np.asarray(mean, dtype=np.float64).reshape(d)
    if cov is not None:
        unit = np.ones(d)
        cov_in_units = np.asarray(cov, dtype=np.float64)
    y_mean, y_scale = 0.0, 1.0
    if standardize_y and sums.y is not None:
        y_shift, y_unit, y_total, y_second = sums.y
        y_mean = y_shift + y_unit * (y_total / n)
        y_scale = y_unit * float(np.sqrt(max(y_second - y_total**2 / n, 0.0) / max(n - 1, 1)))
        if not y_scale > _CONSTANT_RTOL * max(abs(y_mean), np.finfo(float).tiny):
            raise ValueError(f"y is constant (every value is {y_mean:.6g}); there is nothing to fit")
    sd_in_units = np.sqrt(np.maximum(np.diag(cov_in_units), 0.0))
    sd = unit * sd_in_units
    constant = np.flatnonzero(~(sd > _CONSTANT_RTOL * np.maximum(np.abs(x_mean), np.finfo(float).tiny)))
    if constant.size:
        listed = ", ".join(f"{j} (= {x_mean[j]:.6g})" for j in constant[:10])
        raise ValueError(f"column(s) {listed} of X are constant: they carry no information and leave the input "
                         "covariance singular; drop them before fitting")
    correlation = cov_in_units / np.outer(sd_in_units, sd_in_units)
    if kind == "identity":
        return Frame(np.zeros(d), np.eye(d), y_mean, y_scale, kind, correlation)
    if kind == "standardize":
        return Frame(x_mean, np.diag(1.0 / sd), y_mean, y_scale, kind, correlation)
    eigenvalues = np.linalg.eigvalsh(correlation)
    if eigenvalues[0] <= _MIN_CORRELATION_EIGENVALUE:
        loadings = np.linalg.eigh(correlation)[1][:, 0]
        involved = np.flatnonzero(np.abs(loadings) > 0.1)
        raise ValueError(f"columns {involved[:10].tolist()} of X are (nearly) collinear: the correlation matrix has "
                         f"eigenvalue {eigenvalues[0]:.3g}; drop or combine them before fitting")
    lower = np.linalg.cholesky(correlation)
    x_map = np.linalg.solve(lower, np.diag(1.0 / sd)).T  # diag(1/sd) @ inv(L)^T
    return Frame(x_mean, x_map, y_mean, y_scale, kind, correlation)


@dataclass(frozen=True)
class _Sums:
    """One pass's sufficient statistics: n (the weight total), the shift (first row), per-column power-of-two
    units, sum w (x - shift) / unit, sum w (x - shift)(x - shift)^T / unit unit^T, and y's (shift, unit, sum,
    sum of squares) or None."""

    n: float
    shift: np.ndarray
    unit: np.ndarray
    total: np.ndarray
    second: np.ndarray
    y: tuple | None


def _power_of_two_units(centred: np.ndarray) -> np.ndarray:
    """2^ceil(log2 max |column|) (1 for zero columns): dividing by it is exact and keeps squares finite."""
    largest = np.max(np.abs(centred), axis=0) if centred.size else np.zeros(centred.shape[1:])
    return np.where(largest > 0, np.exp2(np.ceil(np.log2(np.where(largest > 0, largest, 1.0)))), 1.0)


def _shifted_sums(X, y, sample_weight, chunk_rows: int) -> _Sums:
    """The statistics of `_Sums` in one pass over X (and y); Dask arrays are reduced on their cluster."""
    if is_dask_collection(X):
        return _dask_sums(X, y)
    n, shift, unit, total, second = 0.0, None, None, None, None
    y_shift, y_unit, y_total, y_second = None, 1.0, 0.0, 0.0
    for start, X_chunk, y_chunk in iter_row_chunks(X, y, chunk_rows):
        X_chunk = np.asarray(X_chunk, dtype=np.float64)
        _check_finite(X_chunk, "X", start)
        w = None if sample_weight is None else sample_weight[start:start + X_chunk.shape[0]]
        if shift is None:
            shift = X_chunk[0].copy()
            unit = _power_of_two_units(X_chunk - shift)
            total, second = np.zeros_like(shift), np.zeros((shift.size, shift.size))
        centred = (X_chunk - shift) / unit
        weighted = centred if w is None else centred * w[:, None]
        total += weighted.sum(axis=0)
        second += weighted.T @ centred
        if y_chunk is not None:
            y_chunk = np.asarray(y_chunk, dtype=np.float64)
            _check_finite(y_chunk, "y", start)
            if y_shift is None:
                y_shift = float(y_chunk[0])
                y_unit = float(_power_of_two_units((y_chunk - y_shift)[:, None])[0])
            y_centred = (y_chunk - y_shift) / y_unit
            y_weighted = y_centred if w is None else y_centred * w
            y_total += float(np.sum(y_weighted))
            y_second += float(y_weighted @ y_centred)
        n += X_chunk.shape[0] if w is None else float(w.sum())
    y_stats = None if y_shift is None else (y_shift, y_unit, y_total, y_second)
    return _Sums(n, shift, unit, total, second, y_stats)


def _dask_sums(X, y) -> _Sums:
    import dask
    import dask.array as da

    X = da.asarray(X).astype(np.float64)
    first = X[:1024].compute()
    shift = np.asarray(first[0])
    unit = _power_of_two_units(first - shift)
    centred = (X - shift) / unit
    parts = [centred.sum(axis=0), centred.T @ centred, da.isfinite(X).all()]
    y_stats = None
    if y is not None:
        y = da.asarray(y).astype(np.float64)
        y_first = np.asarray(y[:1024].compute())
        y_shift = float(y_first[0])
        y_unit = float(_power_of_two_units((y_first - y_shift)[:, None])[0])
        y_centred = (y - y_shift) / y_unit
        parts += [y_centred.sum(), (y_centred**2).sum(), da.isfinite(y).all()]
    values = dask.compute(*parts)
    if not values[2] or (y is not None and not values[5]):
        raise ValueError("X or y contains NaN or inf; remove or impute such rows before fitting")
    if y is not None:
        y_stats = (y_shift, y_unit, float(values[3]), float(values[4]))
    return _Sums(float(X.shape[0]), shift, unit, np.asarray(values[0]), np.asarray(values[1]), y_stats)


def _check_finite(values: np.ndarray, name: str, start: int) -> None:
    finite = np.isfinite(values)
    if not finite.all():
        row = start + int(np.flatnonzero(~finite.reshape(values.shape[0], -1).all(axis=1))[0])
        raise ValueError(f"{name} contains NaN or inf at row {row}; remove or impute such rows before fitting")
