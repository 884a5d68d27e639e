"""Additive sums for Hermite moments E[y He_m(z)], z ~ N(0, I), with low-order control variates.

By Stein's lemma E[y He_m(z)] = E[∇^m y] (the Stein's-lemma seed; Janzamin, Sedghi & Anandkumar 2015), and because
Hermite polynomials of different degrees are orthogonal under N(0, I), the moment only sees y's component of degree
m. Every lower-degree component adds variance and nothing else. For the networks `identify` meets, that is most of
it: 97.7% of E[relu(z)^2] = 1/2 lies in degrees 0 to 2 (1/2π, 1/4 and 1/4π), and 96.7% of its variance. So
the sums are kept for the residual r = y - g(z), where g is y's least-squares fit on the Hermite polynomials of
degree <= 2 (1, z_i, z_i^2 - 1, z_i z_j), and E[g He_m] = 0 for m >= 3 leaves the moment's mean unchanged: a control
variate (Glynn & Szechtman 2002). g is fitted on *other* queries than the ones it is subtracted from (the earlier
queries of the same sums plus the other half of the batch, two-fold cross-fitting, and optionally queries given by
the caller), so it is fixed given those rows and the moment stays unbiased; in-sample fitting would bias it by O(1/n).
On relu d = 10, k = 5 and softplus at noise 0.05 this divides the moment's squared error by 22 to 29
(`benchmarks/bench_identify_control.py`).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from .tensor._multilinear import khatri_rao

__all__ = ["HermiteSums", "LowOrderFit", "hermite_norm2"]

_CHUNK_ROWS = 2_048
# the full degree-2 fit has 1 + d(d+3)/2 features; past this many (d > 30) the cross terms z_i z_j are dropped and the
# fit keeps 1, z_i and z_i^2 - 1: its Gram matrix is kept and solved at every batch, O(features^2) per query (at
# d = 30, order 3, the control costs 6x the moment sums). Without the cross terms the reduction is smaller where a
# network's degree-2 part is (relu-like units); it is unmeasured there
MAX_CONTROL_FEATURES = 500
# a fit uses the largest nested feature set (constant; + linear; + squares; + cross terms) with at least this many
# effective rows per feature: the fitted control's own error adds ~ features / effective rows to the residual variance
_ROWS_PER_FEATURE = 10


def hermite_norm2(Z: np.ndarray, order: int) -> np.ndarray:
    """||He_m(z)||_F^2 for every row z of Z (m = 3, 4). Rotation invariant, so computed at z = t e_1 (t^2 = |z|^2),
    where the tensor's entry for an index with n_1 ones and n_j j's is He_{n_1}(t) prod_j He_{n_j}(0); summing the
    squares over indices (He_n(0)^2 = 1, 1, 9 for n = 0, 2, 4; odd n vanish):
    m = 3: He_3(t)^2 + 3 (d - 1) t^2;
    m = 4: He_4(t)^2 + 6 (d - 1) He_2(t)^2 + 9 (d - 1) + 3 (d - 1) (d - 2)."""
    d, R = Z.shape[1], np.einsum("ij,ij->i", Z, Z)
    if order == 3:
        return R * (R - 3) ** 2 + 3 * (d - 1) * R
    return (R ** 2 - 6 * R + 3) ** 2 + 6 * (d - 1) * (R - 1) ** 2 + 9 * (d - 1) + 3 * (d - 1) * (d - 2)


class LowOrderFit:
    """Sufficient statistics of the control g: the weighted least-squares fit of the outputs on the Hermite
    polynomials of degree <= 2, weights ||He_m(z)||_F^(2 weight_power), additive over disjoint sets of queries.

    The control that minimises the trace of the moment's covariance, E[(y - g)^2 ||He_m||^2] (minus ||T||^2, which g
    does not change), is the fit with weights ||He_m||^2; the plain fit (weights 1) minimises E[(y - g)^2]. The
    first leans on a few far queries (its effective sample size is 2% of the rows at d = 3, m = 4); the second is
    large where ||He_m|| is for a response that lives near the origin (a bump), and there raised the moment's
    variance threefold. The default weights ||He_m|| (weight_power 1/2) sit between them and gave the smallest error
    on relu d = 10 and tanh d = 20 and lost at most 10% of the uncontrolled SNR on the bump (measured
    with each of the three; BENCHMARKS.md, "Control variates")."""

    def __init__(self, d: int, n_outputs: int, order: int, weight_power: float = 0.5):
        self.d, self.order, self.weight_power = d, order, weight_power
        self.pairs = np.triu_indices(d, 1)
        crosses = len(self.pairs[0]) if 1 + 2 * d + len(self.pairs[0]) <= MAX_CONTROL_FEATURES else 0
        self.sizes = (1, 1 + d, 1 + 2 * d) + ((1 + 2 * d + crosses,) if crosses else ())
        self.width = self.sizes[-1]
        self.gram = np.zeros((self.width, self.width))
        self.cross = np.zeros((self.width, n_outputs))
        self.weight_sums = np.zeros(2)  # sum w, sum w^2: the effective number of rows (sum w)^2 / sum w^2

    def features(self, Z: np.ndarray) -> np.ndarray:
        """(n, width): 1, z_i, z_i^2 - 1 and, when kept, z_i z_j for i < j (the nested sets are prefixes)."""
        columns = [np.ones((len(Z), 1)), Z, Z ** 2 - 1]
        if self.width > 1 + 2 * self.d:
            columns.append(Z[:, self.pairs[0]] * Z[:, self.pairs[1]])
        return np.concatenate(columns, axis=1)

    def of(self, Z: np.ndarray, Y: np.ndarray) -> LowOrderFit:
        """The statistics of the queries (Z, Y) alone."""
        fit = self._empty()
        weights = hermite_norm2(Z, self.order) ** self.weight_power
        Phi = fit.features(Z)
        fit.gram, fit.cross = (Phi * weights[:, None]).T @ Phi, (Phi * weights[:, None]).T @ Y
        fit.weight_sums = np.array([weights.sum(), weights @ weights])
        return fit

    def _empty(self) -> LowOrderFit:
        return LowOrderFit(self.d, self.cross.shape[1], self.order, self.weight_power)

    def _combined(self, other: LowOrderFit, sign: int) -> LowOrderFit:
        total = self._empty()
        total.gram, total.cross = self.gram + sign * other.gram, self.cross + sign * other.cross
        total.weight_sums = self.weight_sums + sign * other.weight_sums
        return total

    def __add__(self, other: LowOrderFit) -> LowOrderFit:
        return self._combined(other, 1)

    def __sub__(self, other: LowOrderFit) -> LowOrderFit:
        return self._combined(other, -1)

    def predict(self, Z: np.ndarray) -> np.ndarray:
        """g(Z) for the fit's coefficients (zero with no rows)."""
        total, squares = self.weight_sums
        if not total > 0:
            return np.zeros((len(Z), self.cross.shape[1]))
        effective_rows = total ** 2 / squares
        size = max((s for s in self.sizes if effective_rows >= _ROWS_PER_FEATURE * s), default=1)
        gram = self.gram[:size, :size]
        # a tiny ridge keeps the solve defined when a feature is constant on the rows (e.g. d = 1, two rows); not on
        # the constant column, whose shrinkage would leave ~1e-12 of the outputs' offset in every residual
        ridge = np.full(size, 1e-12 * np.trace(gram) / size)
        ridge[0] = 0.0
        coef = scipy.linalg.solve(gram + np.diag(ridge), self.cross[:size], assume_a="pos")
        return self.features(Z)[:, :size] @ coef


class HermiteSums:
    """Additive sums over queries z ~ N(0, I) for the centred Hermite moments E[(r_j - mean r_j) He_m(z)] of the
    responses' residuals r = y - g(z) (module docstring; `control=False`: r = y; `weight_power`: `LowOrderFit`).

    Kept for u = (1, r_1, ..., r_p): sum u, sum u z^{⊗m} and the lower sum the Hermite correction needs (sum u z for
    m = 3, sum u z z^T for m = 4). He_3(z) = z^{⊗3} - sym(z ⊗ I) and He_4(z) = z^{⊗4} - sym(z z^T ⊗ I) +
    sym(I ⊗ I); the constant column's Hermite mean (0 in expectation) is subtracted with weight mean(r_j).
    """

    def __init__(self, d: int, n_outputs: int, order: int, control: bool = True, weight_power: float = 0.5):
        if order not in (3, 4):
            raise ValueError(f"order must be 3 or 4, got {order}")
        self.d, self.order, self.n = d, order, 0
        width = n_outputs + 1
        self.count = np.zeros(width)
        self.top = np.zeros((width * d ** (order // 2), d ** (order - order // 2)))
        self.lower = np.zeros((width,) + (d,) * (order - 2))
        self.fit = LowOrderFit(d, n_outputs, order, weight_power) if control else None

    def add(self, Z: np.ndarray, Y: np.ndarray, others: LowOrderFit | None = None) -> np.ndarray:
        """Add the queries Z (n, d) in the design's z units with responses Y (n, p) or (n,); returns the residuals
        summed, (n, p).

        Each half of the rows (even, odd) is controlled by the fit on the earlier queries of these sums, the other
        half and `others` (statistics of further queries independent of these rows, e.g. the other folds)."""
        Y = np.asarray(Y, dtype=np.float64).reshape(len(Z), -1)
        residuals = self._residuals(Z, Y, others) if self.fit is not None else Y
        for begin in range(0, len(Z), _CHUNK_ROWS):
            z = Z[begin:begin + _CHUNK_ROWS]
            u = np.column_stack([np.ones(len(z)), residuals[begin:begin + _CHUNK_ROWS]])
            pairs = khatri_rao([z.T, z.T]).T  # (n, d^2), row i = z_i ⊗ z_i
            lead = z if self.order == 3 else pairs  # z^{⊗m} = lead ⊗ pairs
            # one BLAS product: (u ⊗ lead)^T (pairs), i.e. sum_i u_i z_i^{⊗m} for every column of u
            self.top += (u[:, :, None] * lead[:, None, :]).reshape(len(z), -1).T @ pairs
            self.lower += (u.T @ (z if self.order == 3 else pairs)).reshape(self.lower.shape)
            self.count += u.sum(axis=0)
        self.n += len(Z)
        return residuals

    def _residuals(self, Z: np.ndarray, Y: np.ndarray, others: LowOrderFit | None) -> np.ndarray:
        known = self.fit if others is None else self.fit + others
        halves = (np.arange(0, len(Z), 2), np.arange(1, len(Z), 2))
        stats = [self.fit.of(Z[rows], Y[rows]) for rows in halves]
        residuals = np.empty_like(Y, dtype=np.float64)
        for rows, other in zip(halves, stats[::-1], strict=True):
            residuals[rows] = Y[rows] - (known + other).predict(Z[rows])
        self.fit = self.fit + stats[0] + stats[1]
        return residuals

    def __add__(self, other: HermiteSums) -> HermiteSums:
        if (self.fit is None) != (other.fit is None):
            raise ValueError("cannot add sums with a control to sums without one: their residuals differ")
        total = HermiteSums(self.d, len(self.count) - 1, self.order, control=False)
        total.top, total.lower = self.top + other.top, self.lower + other.lower
        total.count, total.n = self.count + other.count, self.n + other.n
        if self.fit is not None:
            total.fit = self.fit + other.fit
        return total

    def moments(self) -> np.ndarray:
        """(p, d, ..., d): the centred Hermite moment of every output."""
        d, m = self.d, self.order
        top = self.top.reshape((-1,) + (d,) * m) / self.n
        lower, mean_u = self.lower / self.n, self.count / self.n
        eye = np.eye(d)
        if m == 3:
            hermite = top - (np.einsum("wi,jk->wijk", lower, eye) + np.einsum("wj,ik->wijk", lower, eye)
                             + np.einsum("wk,ij->wijk", lower, eye))
        else:
            pairs = sum(np.einsum(f"w{a}{b},{c}{e}->wijkl", lower, eye)
                        for a, b, c, e in ("ijkl", "ikjl", "iljk", "jkil", "jlik", "klij"))
            identity = (np.einsum("ij,kl->ijkl", eye, eye) + np.einsum("ik,jl->ijkl", eye, eye)
                        + np.einsum("il,jk->ijkl", eye, eye))
            hermite = top - pairs + mean_u[:, None, None, None, None] * identity
        output_means = mean_u[1:] / mean_u[0]
        return hermite[1:] - output_means.reshape((-1,) + (1,) * m) * hermite[:1]
