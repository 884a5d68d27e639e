"""Gaussian score functions: Hermite tensors of x ~ N(mu, Sigma) (Janzamin, Sedghi, Anandkumar 2014).

With z = Sigma^{-1}(x - mu) and P = Sigma^{-1}, the scores are the multivariate Hermite tensors
  S1 = z,  S2 = z⊗z - P,  S3 = z⊗z⊗z - sym(z⊗P) (3 terms),
  S4 = z^{⊗4} - sym(z⊗z⊗P) (6 terms) + sym(P⊗P) (3 terms).
They are never formed: every method returns a sum over rows of w_r S_m(x_r) contracted with probe vectors,
as matrix products over the rows plus the rank-one corrections, so the cost is O(rows · d · probes).
"""

from __future__ import annotations

import itertools
import warnings

import dask
import numpy as np
import torch

from .._backend import DEFAULT_CHUNK_ROWS, DaskSource, is_dask_collection, iter_row_chunks

__all__ = ["GaussianScore", "NonGaussianInputWarning"]

_GAUSSIANITY_Z = 6.0


class NonGaussianInputWarning(UserWarning):
    """The input does not look Gaussian, so the Gaussian score makes Stein's lemma biased."""


class GaussianScore:
    """Score functions of N(mean, cov). Pass `mean`/`cov`, or leave them None and call `fit(X)`."""

    def __init__(self, mean=None, cov=None):
        self.mean = mean
        self.cov = cov

    @classmethod
    def from_parameters(cls, mean, cov) -> GaussianScore:
        """A fitted score of N(mean, cov) without data (no Gaussianity test): e.g. one mixture component."""
        score = cls(mean, cov)
        cov = np.asarray(cov, dtype=np.float64)
        score.mean_ = np.asarray(mean, dtype=np.float64).reshape(-1)
        score.cov_ = cov
        score.precision_ = np.linalg.inv(cov)
        score.precision_ = 0.5 * (score.precision_ + score.precision_.T)
        score.n_features_in_ = cov.shape[0]
        score.gaussianity_ = None
        return score

    @property
    def is_fitted(self) -> bool:
        """True once mean_, cov_ and precision_ are set (by `fit` or `from_parameters`)."""
        return hasattr(self, "precision_")

    # -- fitting ---------------------------------------------------------------------------------------
    def fit(self, X, chunk_rows: int = DEFAULT_CHUNK_ROWS, column_sums=None) -> GaussianScore:
        """Estimate the missing mean/covariance in one pass and test the Gaussian assumption (Mardia).

        X is any row source; a Dask array (or a `DaskSource`, whose scheduler may be a Client) is reduced on its
        cluster as map-reduce sums instead of streaming its blocks here. `column_sums` = (sum x, sum x x^T) over
        all rows of X, when a caller already has them (`CrossMoment`'s construction pass), saves that pass.
        """
        n, d = X.shape
        total, second = _column_sums(X, chunk_rows) if column_sums is None else column_sums
        mean = total / n if self.mean is None else np.asarray(self.mean, dtype=np.float64).reshape(d)
        if self.cov is None:
            cov = second / n - np.outer(total / n, total / n)
            cov = cov * n / max(n - 1, 1)
        else:
            cov = np.asarray(self.cov, dtype=np.float64)
        if cov.shape != (d, d) or not np.allclose(cov, cov.T):
            raise ValueError(f"cov must be a symmetric {d}x{d} matrix")
        eigvals = np.linalg.eigvalsh(cov)
        if eigvals[0] <= 1e-12 * max(eigvals[-1], 1e-300):
            raise ValueError("the input covariance is singular (constant or collinear columns); drop or "
                             "combine those columns before fitting")
        self.mean_ = mean
        self.cov_ = cov
        self.precision_ = np.linalg.inv(cov)
        self.precision_ = 0.5 * (self.precision_ + self.precision_.T)
        self.n_features_in_ = d
        self.gaussianity_ = self._mardia(X, chunk_rows)
        if abs(self.gaussianity_["kurtosis_z"]) > _GAUSSIANITY_Z:
            warnings.warn(
                f"inputs do not look Gaussian (Mardia kurtosis {self.gaussianity_['kurtosis']:.1f} vs "
                f"{d * (d + 2)} expected, z = {self.gaussianity_['kurtosis_z']:.1f}); the Gaussian score biases "
                "the moment tensor. Use a score for your input density: score_function='mixture' (Gaussian "
                "mixture), 'learned' (denoising score matching), 'student_t' or a DensityScore(log_prob).",
                NonGaussianInputWarning, stacklevel=2)
        return self

    def _mardia(self, X, chunk_rows: int) -> dict:
        """Mardia's multivariate kurtosis E[((x-mu)^T P (x-mu))^2] = d(d+2) under normality."""
        n, d = X.shape
        kurtosis = _squared_mahalanobis_sum(X, self.mean_, self.precision_, chunk_rows) / n
        expected = d * (d + 2)
        if self.cov is None:  # estimated (n - 1) covariance: E[b2] = d(d+2)(n-1)/(n+1) (Mardia 1974), rescaled
            expected *= (n - 1) / (n + 1) * ((n - 1) / n) ** 2
            variance = 8.0 * d * (d + 2) / n
        else:  # known parameters: b2 is a mean of (chi^2_d)^2, whose variance is 8 d (d+2) (d+3)
            variance = 8.0 * d * (d + 2) * (d + 3) / n
        return {"kurtosis": kurtosis, "kurtosis_expected": float(expected),
                "kurtosis_z": (kurtosis - expected) / np.sqrt(variance)}

    # -- contractions on a chunk of rows (torch) -------------------------------------------------------
    def _constants(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.as_tensor(self.mean_, dtype=X.dtype, device=X.device),
                torch.as_tensor(self.precision_, dtype=X.dtype, device=X.device))

    @staticmethod
    def _z_times(X: torch.Tensor, mean: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        """Z @ B' with Z = (X - mu) P, given B = P B' already: X @ B minus the rank-one mean term."""
        return torch.addmm(-(mean @ B), X, B)

    @staticmethod
    def _zt_times(X: torch.Tensor, mean: torch.Tensor, precision: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
        """Z^T @ A = P ((X - mu)^T A) without forming Z: one product over the rows plus a rank-one term."""
        return precision @ (X.T @ A - torch.outer(mean, A.sum(dim=0)))

    def contract_chunk(self, X: torch.Tensor, w: torch.Tensor, V: torch.Tensor, order: int) -> torch.Tensor:
        """sum_r w_r S_order(x_r)(I, v, ..., v) for each column v of V: a (d, m) tensor.

        Costs the three products X @ (P V), X^T @ (...) and a d x d x m one, never (X - mu) P itself.
        """
        mean, P = self._constants(X)
        PV = P @ V
        ZV = self._z_times(X, mean, PV)
        if order == 1:
            return self._zt_times(X, mean, P, w[:, None]).expand(-1, V.shape[1]).clone()
        if order == 2:
            return self._zt_times(X, mean, P, w[:, None] * ZV) - PV * w.sum()
        vPv = (V * PV).sum(dim=0)
        if order == 3:
            wZV = w @ ZV
            weighted_z = P @ (X.T @ w - mean * w.sum())
            cubic = self._zt_times(X, mean, P, ZV.square_().mul_(w[:, None]))  # in place: ZV is not used again
            return cubic - weighted_z[:, None] * vPv - 2.0 * PV * wZV
        if order == 4:
            zt = self._zt_times(X, mean, P, torch.cat([w[:, None] * ZV**3, w[:, None] * ZV], dim=1))
            m = V.shape[1]
            return (zt[:, :m] - 3.0 * zt[:, m:] * vPv - 3.0 * PV * (w @ ZV**2) + 3.0 * PV * vPv * w.sum())
        raise ValueError(f"order must be 1, 2, 3 or 4, got {order}")

    # -- streamed statistics: per-chunk sums without the probe-independent terms, completed once per pass -----
    @staticmethod
    def streams(statistic: str, order: int) -> bool:
        """Whether `statistic` of this order has the streamed split (`streamed_chunk` + `streamed_finish`)."""
        return order == 3 and statistic in ("contract", "pairs")

    def streamed_probes(self, statistic: str, probes: list[torch.Tensor], raw: bool = False) -> list[torch.Tensor]:
        """The probes as `streamed_chunk` takes them, prepared once per pass: P u (and P w' for "pairs"), each
        followed by -mu.P u unless `raw` (the mean of the rows' products, folded into the product by X)."""
        mean, P = self._constants(probes[0])
        prepared = []
        for V in probes[:1] if statistic == "contract" else probes[:2]:
            PV = P @ V
            prepared += [PV] if raw else [PV, -(mean @ PV)]
        return prepared

    def streamed_chunk(self, statistic: str, X: torch.Tensor, w: torch.Tensor, prepared: list[torch.Tensor],
                       raw: bool = False) -> torch.Tensor:
        """[X^T A; 1^T A] (shape (d + 1, m)) for A = w ⊙ (Z u) ⊙ (Z w') per probe pair (u = w' for "contract"),
        from the `streamed_probes`.

        The rest of S3's contraction depends on the rows only through sum_r w_r x_r and sum_r w_r, which the
        moment sums once at construction, and P is applied once to the pass total (`streamed_finish`). `raw`:
        X^T A (d, m) for A = w ⊙ (X P u) ⊙ (X P w') without the mean, whose terms then come from sum w x x^T too;
        per chunk that is exactly the products by X and the elementwise products.
        """
        def times(index):
            return X @ prepared[index] if raw else torch.addmm(prepared[2 * index + 1], X, prepared[2 * index])

        A = times(0)
        if statistic == "contract":
            A.square_()
        else:
            A.mul_(times(1))
        A.mul_(w[:, None])
        return X.T @ A if raw else torch.cat([X.T @ A, A.sum(dim=0, keepdim=True)])

    def streamed_finish(self, statistic: str, total: torch.Tensor, probes: list[torch.Tensor],
                        weighted_x: torch.Tensor, weight_sum: float, weighted_xx: torch.Tensor | None = None
                        ) -> torch.Tensor:
        """The pass total of `streamed_chunk` completed to sum_r w_r S3(x_r)(I, u, w') (Hermite S3, see module):
        P (X^T A - mu 1^T A) - (sum w z) <u, P w'> - P u <sum w z, w'> - P w' <sum w z, u>, sum w z = P (r - mu s),
        r = sum_r w_r x_r, s = sum_r w_r. A raw total (weighted_xx = M = sum w x x^T given) is first centred:
        with a = x.Pu, b = x.Pw' and c_u = mu.Pu, c_w = mu.Pw', X^T A = raw - c_w M Pu - c_u M Pw' + c_u c_w r and
        1^T A = diag(Pu^T M Pw') - c_w r.Pu - c_u r.Pw' + c_u c_w s."""
        mean, P = self._constants(total)
        U = probes[0]
        W = U if statistic == "contract" else probes[1]
        PU, PW = P @ U, P @ W
        if weighted_xx is not None:
            c_u, c_w = mean @ PU, mean @ PW
            MU, MW = weighted_xx @ PU, weighted_xx @ PW
            xta = total - MU * c_w - MW * c_u + torch.outer(weighted_x, c_u * c_w)
            colsum = (PU * MW).sum(dim=0) - c_w * (weighted_x @ PU) - c_u * (weighted_x @ PW) + c_u * c_w * weight_sum
            total = torch.cat([xta, colsum[None]])
        cubic = P @ (total[:-1] - torch.outer(mean, total[-1]))
        weighted_z = P @ (weighted_x - mean * weight_sum)
        return cubic - weighted_z[:, None] * (U * PW).sum(dim=0) - PU * (weighted_z @ W)[None] \
            - PW * (weighted_z @ U)[None]

    def contract_rows(self, X: torch.Tensor, w: torch.Tensor, V: torch.Tensor, order: int) -> torch.Tensor:
        """The per-row terms w_r S_order(x_r)(I, v, ..., v), shape (rows, d, m): for variance estimates."""
        mean, P = self._constants(X)
        Z = (X - mean) @ P
        PV = P @ V
        ZV = Z @ V
        vPv = (V * PV).sum(dim=0)
        if order == 3:
            rows = Z[:, :, None] * (ZV**2 - vPv)[:, None, :] - 2.0 * PV[None] * ZV[:, None, :]
        elif order == 4:
            rows = (Z[:, :, None] * (ZV**3 - 3.0 * ZV * vPv)[:, None, :]
                    - 3.0 * PV[None] * (ZV**2 - vPv)[:, None, :])
        else:
            raise ValueError(f"per-row contractions are implemented for orders 3 and 4, got {order}")
        return w[:, None, None] * rows

    def contract_pairs_chunk(self, X: torch.Tensor, w: torch.Tensor, U: torch.Tensor,
                             W: torch.Tensor) -> torch.Tensor:
        """sum_r w_r S3(x_r)(I, u_i, w_i) for column pairs (u_i, w_i): a (d, m) tensor."""
        mean, P = self._constants(X)
        PU, PW = P @ U, P @ W
        ZU, ZW = self._z_times(X, mean, PU), self._z_times(X, mean, PW)
        uPw = (U * PW).sum(dim=0)
        wZU, wZW = w @ ZU, w @ ZW
        weighted_z = P @ (X.T @ w - mean * w.sum())
        cubic = self._zt_times(X, mean, P, ZU.mul_(ZW).mul_(w[:, None]))  # in place: ZU is not used again
        return cubic - weighted_z[:, None] * uPw - PU * wZW - PW * wZU

    def project_chunk(self, X: torch.Tensor, w: torch.Tensor, Q: torch.Tensor, order: int) -> torch.Tensor:
        """sum_r w_r S_order(x_r)(Q, ..., Q): a dense (k,)*order tensor, k = Q.shape[1]."""
        mean, P = self._constants(X)
        Y = self._z_times(X, mean, P @ Q)
        G = Q.T @ P @ Q
        s0 = w.sum()
        if order == 2:
            return Y.T @ (w[:, None] * Y) - s0 * G
        if order == 3:
            m1 = Y.T @ w
            k = Y.shape[1]
            pairs = (Y[:, :, None] * Y[:, None, :]).reshape(-1, k * k)
            cubic = ((w[:, None] * Y).T @ pairs).reshape(k, k, k)
            return cubic - _vec_times_pair(torch.einsum, m1, G)
        if order == 4:
            k = Y.shape[1]
            pairs = (Y[:, :, None] * Y[:, None, :]).reshape(-1, k * k)
            quartic = (pairs.T @ (w[:, None] * pairs)).reshape(k, k, k, k)
            m2 = Y.T @ (w[:, None] * Y)
            return quartic - _pair_times_pair(torch.einsum, m2, G) + s0 * _pairings(torch.einsum, G)
        raise ValueError(f"order must be 2, 3 or 4 for a projected moment, got {order}")

    def image_chunk(self, X: torch.Tensor, w: torch.Tensor, Q: torch.Tensor, order: int) -> torch.Tensor:
        """sum_r w_r S_order(x_r)(I, Q, ..., Q): a (d,) + (k,)*(order-1) tensor, k = Q.shape[1].

        With u = Q^T z per row, G = Q^T P Q and PQ = P Q: order 3 is sum w z⊗u⊗u - (sum w z)⊗G - the two
        placements of PQ beside sum w u; order 4 is sum w z⊗u⊗u⊗u - sym((sum w z⊗u)⊗G) - sym(PQ⊗(sum w u⊗u))
        + (sum w) sym(PQ⊗G), each sym over the three placements. The leading sum is one product over the rows
        against the distinct products of u's entries only.
        """
        mean, P = self._constants(X)
        PQ = P @ Q
        U = self._z_times(X, mean, PQ)
        G = Q.T @ PQ
        products, expand = _distinct_products(U, order - 1)
        lead = self._zt_times(X, mean, P, products.mul_(w).T)[:, expand]
        k = Q.shape[1]
        if order == 3:
            weighted_z = P @ (X.T @ w - mean * w.sum())
            m1 = U.T @ w
            out = lead.reshape(-1, k, k) - torch.einsum("i,ab->iab", weighted_z, G)
            return out - torch.einsum("ia,b->iab", PQ, m1) - torch.einsum("ib,a->iab", PQ, m1)
        if order == 4:
            M = self._zt_times(X, mean, P, w[:, None] * U)
            N = U.T @ (w[:, None] * U)
            correction = M - w.sum() * PQ
            out = lead.reshape(-1, k, k, k)
            for left, right in ((correction, G), (PQ, N)):
                out = out - (torch.einsum("ia,bc->iabc", left, right) + torch.einsum("ib,ac->iabc", left, right)
                             + torch.einsum("ic,ab->iabc", left, right))
            return out
        raise ValueError(f"order must be 3 or 4 for a subspace image, got {order}")

    # -- reference (tests, tiny d only) ----------------------------------------------------------------
    def dense(self, x: np.ndarray, order: int) -> np.ndarray:
        """The full tensor S_order(x) for one point x (for brute-force checks on tiny d)."""
        z = self.precision_ @ (np.asarray(x, dtype=np.float64) - self.mean_)
        P = self.precision_
        outer = z
        for _ in range(order - 1):
            outer = np.multiply.outer(outer, z)
        if order == 1:
            return outer
        if order == 2:
            return outer - P
        if order == 3:
            return outer - _vec_times_pair(np.einsum, z, P)
        if order == 4:
            return outer - _pair_times_pair(np.einsum, np.outer(z, z), P) + _pairings(np.einsum, P)
        raise ValueError(f"order must be 1, 2, 3 or 4, got {order}")


def _on_dask(X):
    """(dask array, scheduler) behind X when it is a Dask array or a `DaskSource`, else None."""
    if isinstance(X, DaskSource):
        return X.X.astype(np.float64), X.scheduler
    if is_dask_collection(X):
        return X.astype(np.float64), None
    return None


def _column_sums(X, chunk_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """sum_r x_r and sum_r x_r x_r^T: one streamed pass, or one map-reduce on X's Dask cluster."""
    on_dask = _on_dask(X)
    if on_dask is not None:
        rows, scheduler = on_dask
        total, second = dask.compute(rows.sum(axis=0), rows.T @ rows, scheduler=scheduler)
        return np.asarray(total), np.asarray(second)
    d = X.shape[1]
    total, second = np.zeros(d), np.zeros((d, d))
    for _, chunk, _ in iter_row_chunks(X, None, chunk_rows):
        chunk = np.asarray(chunk, dtype=np.float64)
        total += chunk.sum(axis=0)
        second += chunk.T @ chunk
    return total, second


def _squared_mahalanobis_sum(X, mean: np.ndarray, precision: np.ndarray, chunk_rows: int) -> float:
    """sum_r ((x_r - mu)^T P (x_r - mu))^2, streamed or reduced on X's Dask cluster."""
    on_dask = _on_dask(X)
    if on_dask is not None:
        rows, scheduler = on_dask
        centred = rows - mean
        return float(dask.compute(((((centred @ precision) * centred).sum(axis=1)) ** 2).sum(),
                                  scheduler=scheduler)[0])
    total = 0.0
    for _, chunk, _ in iter_row_chunks(X, None, chunk_rows):
        centred = np.asarray(chunk, dtype=np.float64) - mean
        total += float(np.sum(np.sum((centred @ precision) * centred, axis=1) ** 2))
    return total


def _distinct_products(U: torch.Tensor, degree: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Products of `degree` columns of U (rows, k) over sorted index tuples in lexicographic order, as a
    (tuples, rows) tensor, and the index that spreads the tuples over all k**degree ordered ones (C order).

    Built row block by row block on U^T (contiguous rows of the output), which is several times faster than
    gathering index columns: each tuple ending in index l is extended by the rows l, ..., k-1 at once.
    """
    k = U.shape[1]
    rows = U.T.contiguous()
    products, last = rows, list(range(k))
    for _ in range(degree - 1):
        extended = torch.empty((sum(k - end for end in last), rows.shape[1]), dtype=U.dtype, device=U.device)
        start, new_last = 0, []
        for row, end in zip(products, last, strict=True):
            torch.mul(row, rows[end:], out=extended[start:start + k - end])
            start += k - end
            new_last.extend(range(end, k))
        products, last = extended, new_last
    tuples = list(itertools.combinations_with_replacement(range(k), degree))
    position = {index: i for i, index in enumerate(tuples)}
    expand = torch.tensor([position[tuple(sorted(index))] for index in itertools.product(range(k), repeat=degree)],
                          device=U.device)
    return products, expand


def _vec_times_pair(einsum, a, G):
    """a_i G_jk + a_j G_ik + a_k G_ij: the three placements of a vector beside a symmetric matrix."""
    return einsum("a,bc->abc", a, G) + einsum("b,ac->abc", a, G) + einsum("c,ab->abc", a, G)


def _pair_times_pair(einsum, M, G):
    """The six placements of symmetric M beside symmetric G over four indices."""
    return (einsum("ab,cd->abcd", M, G) + einsum("ac,bd->abcd", M, G) + einsum("ad,bc->abcd", M, G)
            + einsum("bc,ad->abcd", M, G) + einsum("bd,ac->abcd", M, G) + einsum("cd,ab->abcd", M, G))


def _pairings(einsum, G):
    """G_ab G_cd + G_ac G_bd + G_ad G_bc: the three perfect pairings of four indices."""
    return einsum("ab,cd->abcd", G, G) + einsum("ac,bd->abcd", G, G) + einsum("ad,bc->abcd", G, G)
