"""Score functions of a Gaussian mixture p(x) = sum_c pi_c N(x; mu_c, Sigma_c) (Janzamin, Sedghi, Anandkumar 2014).

Differentiation is linear, so grad^m p = sum_c pi_c grad^m N_c and, exactly,
  S_m(x) = (-1)^m grad^m p(x) / p(x) = sum_c r_c(x) S_m^(c)(x),   r_c(x) = pi_c N_c(x) / p(x),
the posterior responsibilities r_c times the Hermite scores S_m^(c) of each component (`GaussianScore`); the
recursion S_{m+1} = -grad S_m + S_m ⊗ S_1 of "Score function features" gives the same tensors. Every
contraction is the sum over components of the Gaussian contraction with row weights w_r r_c(x_r): C times the
Gaussian score's work plus O(rows · C · d^2) for the responsibilities. The mixture is fitted by scikit-learn's
GaussianMixture on a random subset of the rows, its size chosen by BIC when asked.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
import torch
from scipy.linalg import solve_triangular
from sklearn.exceptions import NotFittedError
from sklearn.mixture import GaussianMixture

from .._backend import DEFAULT_CHUNK_ROWS, as_row_source, iter_row_chunks
from .gaussian import GaussianScore

__all__ = ["MixtureScore"]

_COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def _is_positive_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= 1


class MixtureScore:
    """Score functions of a Gaussian mixture: fit one with `fit(X)` or give it with `from_parameters`.

    n_components is an int, or "bic" to fit 1..max_components components and keep the lowest BIC. The mixture
    is fitted on at most `max_rows` rows drawn at random (seeded by the int `random_state`); up to `max_rows`
    further rows, where there are any, give the held-out log-likelihood in `diagnostics_`. covariance_type,
    reg_covar and n_init go to sklearn.mixture.GaussianMixture; covariances_ is always stored full (C, d, d).
    """

    def __init__(self, n_components="bic", max_components=6, covariance_type="full", max_rows=50_000,
                 reg_covar=1e-6, n_init=1, random_state=None):
        if not (isinstance(n_components, str) and n_components == "bic") and not _is_positive_int(n_components):
            raise ValueError(f"n_components must be a positive int or 'bic', got {n_components!r}")
        for name, value in (("max_components", max_components), ("max_rows", max_rows), ("n_init", n_init)):
            if not _is_positive_int(value):
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if covariance_type not in _COVARIANCE_TYPES:
            raise ValueError(f"covariance_type must be one of {_COVARIANCE_TYPES}, got {covariance_type!r}")
        if not (isinstance(reg_covar, Real) and 0 <= reg_covar < math.inf):
            raise ValueError(f"reg_covar must be a finite number >= 0, got {reg_covar!r}")
        if random_state is not None and (not isinstance(random_state, Integral) or isinstance(random_state, bool)):
            raise ValueError(f"random_state must be None or an int, got {random_state!r}")
        self.n_components = n_components
        self.max_components = max_components
        self.covariance_type = covariance_type
        self.max_rows = max_rows
        self.reg_covar = reg_covar
        self.n_init = n_init
        self.random_state = random_state

    @classmethod
    def from_parameters(cls, weights, means, covariances) -> MixtureScore:
        """A fitted score of sum_c weights[c] N(means[c], covariances[c]) without data (diagnostics_ is None)."""
        weights, means, covariances = _validated(weights, means, covariances)
        score = cls(n_components=len(weights))
        score._set_parameters(weights, means, covariances)
        score.bic_ = None
        score.diagnostics_ = None
        return score

    @property
    def is_fitted(self) -> bool:
        """True once the mixture parameters are set (by `fit` or `from_parameters`)."""
        return hasattr(self, "components_")

    # -- parameters ------------------------------------------------------------------------------------
    def _set_parameters(self, weights, means, covariances) -> None:
        """Store validated parameters, the components and the constants of their log densities."""
        n_components, d = means.shape
        cholesky = np.linalg.cholesky(covariances)
        self.weights_, self.means_, self.covariances_ = weights, means, covariances
        self.n_components_, self.n_features_in_ = n_components, d
        self.components_ = [GaussianScore.from_parameters(m, c) for m, c in zip(means, covariances, strict=True)]
        # (x - mu) @ U has squared norm (x - mu)^T Sigma^{-1} (x - mu) for U = L^{-T}, Sigma = L L^T.
        self.precisions_cholesky_ = np.stack([solve_triangular(L, np.eye(d), lower=True).T for L in cholesky])
        log_det = 2.0 * np.log(np.diagonal(cholesky, axis1=1, axis2=2)).sum(axis=1)
        self._log_constants = np.log(weights) - 0.5 * (d * math.log(2.0 * math.pi) + log_det)

    # -- fitting ---------------------------------------------------------------------------------------
    def fit(self, X, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> MixtureScore:
        """Fit the mixture on at most `max_rows` random rows of X, gathered in one streaming pass over X.

        X is anything `nnlift._backend.as_row_source` reads; it is never modified. NaN or inf anywhere in X
        raises a ValueError naming the row.
        """
        source = as_row_source(X)
        n = source.shape[0]
        picked = np.random.default_rng(self.random_state).choice(n, size=min(n, 2 * self.max_rows), replace=False)
        sample, held_out = _gather_rows(source, [np.sort(picked[:self.max_rows]), np.sort(picked[self.max_rows:])],
                                        chunk_rows)
        model, bic = self._select_model(sample)
        covariances = _full_covariances(model.covariances_, self.covariance_type, model.n_components, sample.shape[1])
        self._set_parameters(*_validated(model.weights_, model.means_, covariances))
        self.bic_ = bic if self.n_components == "bic" else None
        held_out_ll = float(self.log_prob(torch.from_numpy(held_out)).mean()) if len(held_out) else None
        self.diagnostics_ = {"n_components": model.n_components, "bic": bic[model.n_components],
                             "rows_used": len(sample), "heldout_rows": len(held_out),
                             "heldout_log_likelihood": held_out_ll}
        return self

    def _select_model(self, sample: np.ndarray) -> tuple[GaussianMixture, dict[int, float]]:
        """The fitted GaussianMixture (the lowest BIC over 1..max_components for "bic") and the BIC of each size."""
        if self.n_components == "bic":
            sizes = range(1, min(self.max_components, len(sample)) + 1)
        elif self.n_components > len(sample):
            raise ValueError(f"n_components={self.n_components} needs at least as many rows; the fit has "
                             f"{len(sample)}")
        else:
            sizes = [self.n_components]
        best, bic = None, {}
        for size in sizes:
            model = GaussianMixture(size, covariance_type=self.covariance_type, reg_covar=self.reg_covar,
                                    n_init=self.n_init, random_state=self.random_state).fit(sample)
            bic[size] = float(model.bic(sample))
            if best is None or bic[size] < bic[best.n_components]:
                best = model
        return best, bic

    # -- density ---------------------------------------------------------------------------------------
    def _log_joint(self, X: torch.Tensor) -> torch.Tensor:
        """log pi_c + log N(x_r; mu_c, Sigma_c) for every row and component, shape (rows, C), in X's dtype."""
        if not self.is_fitted:
            raise NotFittedError("this MixtureScore is not fitted; call fit(X) or use MixtureScore.from_parameters")
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must have shape (rows, {self.n_features_in_}), got {tuple(X.shape)}")
        means = torch.as_tensor(self.means_, dtype=X.dtype, device=X.device)
        whiten = torch.as_tensor(self.precisions_cholesky_, dtype=X.dtype, device=X.device)
        constants = torch.as_tensor(self._log_constants, dtype=X.dtype, device=X.device)
        mahalanobis = torch.stack([((X - means[c]) @ whiten[c]).square_().sum(dim=1)
                                   for c in range(self.n_components_)], dim=1)
        return constants - 0.5 * mahalanobis

    def log_prob(self, X: torch.Tensor) -> torch.Tensor:
        """log p(x_r) per row, shape (rows,), by logsumexp over the components."""
        return torch.logsumexp(self._log_joint(X), dim=1)

    def responsibilities(self, X: torch.Tensor) -> torch.Tensor:
        """r_c(x_r) = pi_c N_c(x_r) / p(x_r), shape (rows, C), by a softmax of the log joint densities."""
        return torch.softmax(self._log_joint(X), dim=1)

    # -- contractions on a chunk of rows (torch) -------------------------------------------------------
    def _sum_components(self, method: str, X: torch.Tensor, w: torch.Tensor, *args) -> torch.Tensor:
        """sum_c component_c.method(X, w * r_c(X), ...): linear in the row weights since S_m = sum_c r_c S_m^(c)."""
        weights = (self.responsibilities(X) * w[:, None]).T.contiguous()
        return sum(getattr(component, method)(X, weights[c], *args) for c, component in enumerate(self.components_))

    def contract_chunk(self, X: torch.Tensor, w: torch.Tensor, V: torch.Tensor, order: int) -> torch.Tensor:
        """sum_r w_r S_order(x_r)(I, v, ..., v) for each column v of V (orders 1-4): a (d, m) tensor."""
        return self._sum_components("contract_chunk", X, w, V, order)

    def contract_rows(self, X: torch.Tensor, w: torch.Tensor, V: torch.Tensor, order: int) -> torch.Tensor:
        """The per-row terms w_r S_order(x_r)(I, v, ..., v) (orders 3, 4), shape (rows, d, m)."""
        return self._sum_components("contract_rows", X, w, V, order)

    def contract_pairs_chunk(self, X: torch.Tensor, w: torch.Tensor, U: torch.Tensor,
                             W: torch.Tensor) -> torch.Tensor:
        """sum_r w_r S3(x_r)(I, u_i, w_i) for column pairs (u_i, w_i): a (d, m) tensor."""
        return self._sum_components("contract_pairs_chunk", X, w, U, W)

    def project_chunk(self, X: torch.Tensor, w: torch.Tensor, Q: torch.Tensor, order: int) -> torch.Tensor:
        """sum_r w_r S_order(x_r)(Q, ..., Q) (orders 2-4): a dense (k,)*order tensor, k = Q.shape[1]."""
        return self._sum_components("project_chunk", X, w, Q, order)

    # -- reference (tests, tiny d only) ----------------------------------------------------------------
    def dense(self, x: np.ndarray, order: int) -> np.ndarray:
        """The full tensor S_order(x) = sum_c r_c(x) S_order^(c)(x) for one point x (brute-force checks)."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        resp = self.responsibilities(torch.tensor(x[None]))[0].numpy()
        return sum(r * component.dense(x, order) for r, component in zip(resp, self.components_, strict=True))


def _validated(weights, means, covariances) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 copies of the parameters after checking shapes, weights (positive, sum 1) and SPD covariances."""
    weights = np.array(weights, dtype=np.float64)
    means = np.array(means, dtype=np.float64)
    covariances = np.array(covariances, dtype=np.float64)
    if weights.ndim != 1 or len(weights) == 0 or means.ndim != 2 or means.shape[0] != len(weights):
        raise ValueError(f"weights must have shape (C,) and means (C, d) with C >= 1, got {weights.shape} and "
                         f"{means.shape}")
    n_components, d = means.shape
    if covariances.shape != (n_components, d, d):
        raise ValueError(f"covariances must have shape ({n_components}, {d}, {d}), got {covariances.shape}")
    if not (np.all(np.isfinite(weights)) and np.all(np.isfinite(means)) and np.all(np.isfinite(covariances))):
        raise ValueError("mixture parameters must be finite")
    if np.any(weights <= 0) or abs(weights.sum() - 1.0) > 1e-6:
        raise ValueError(f"weights must be positive and sum to 1, got {weights} (sum {weights.sum()})")
    for c, cov in enumerate(covariances):
        if not np.allclose(cov, cov.T, rtol=1e-8, atol=1e-12 * np.abs(cov).max()):
            raise ValueError(f"covariances[{c}] is not symmetric")
        try:
            np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            raise ValueError(f"covariances[{c}] is not positive definite") from None
    return weights / weights.sum(), means, 0.5 * (covariances + covariances.transpose(0, 2, 1))


def _full_covariances(cov: np.ndarray, covariance_type: str, n_components: int, d: int) -> np.ndarray:
    """GaussianMixture.covariances_ of any covariance_type as full (C, d, d) matrices."""
    if covariance_type == "full":
        return cov
    if covariance_type == "tied":
        return np.repeat(cov[None], n_components, axis=0)
    if covariance_type == "diag":
        return cov[:, :, None] * np.eye(d)
    return cov[:, None, None] * np.eye(d)


def _gather_rows(source, row_sets: list[np.ndarray], chunk_rows: int) -> list[np.ndarray]:
    """The rows of each sorted index array as float64 copies, in one pass that refuses NaN/inf anywhere in X."""
    parts = [[] for _ in row_sets]
    for start, chunk, _ in iter_row_chunks(source, None, chunk_rows):
        values = np.asarray(chunk, dtype=np.float64)
        bad = ~np.isfinite(values).all(axis=1)
        if bad.any():
            raise ValueError(f"X contains NaN or inf at row {start + int(np.argmax(bad))}; remove or impute such "
                             "rows before fitting the mixture score")
        for part, rows in zip(parts, row_sets, strict=True):
            lo, hi = np.searchsorted(rows, [start, start + len(values)])
            part.append(values[rows[lo:hi] - start])
    return [np.concatenate(part) for part in parts]
