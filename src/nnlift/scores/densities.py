"""Ready-made input densities for `DensityScore`: independent marginals and an elliptical family.

Each density has `log_prob(X)` (torch, rows independent), `fit(X)` (estimates the parameters left as None from at
most `max_rows` rows), `sample(n, random_state)` and `is_fitted`. Marginal families also have
`marginal_log_prob(X)` (rows, d), which lets `DensityScore` use its separable fast path. All are smooth, as
Stein's lemma needs: the Laplace and uniform marginals are convolved with a small Gaussian.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats

from .._backend import sample_rows

__all__ = ["MultivariateT", "NormalLaplaceMarginals", "SmoothedUniformMarginals", "StudentTMarginals"]

_FIT_ROWS = 20_000
_MAX_SHAPE_SHARE = 0.95


def _fit_rows(X, max_rows: int, random_state) -> np.ndarray:
    """At most `max_rows` rows of any row source as float64 numpy (a seeded subset), checked finite."""
    return sample_rows(X, max_rows, random_state)


def _per_feature(value, d: int, name: str) -> np.ndarray:
    array = np.broadcast_to(np.asarray(value, dtype=np.float64), (d,)).copy()
    if name != "loc" and np.any(array <= 0):
        raise ValueError(f"{name} must be positive, got {value!r}")
    return array


class _Marginals:
    """Independent coordinates x_j = loc_j + scale_j * e_j with a standard one-dimensional shape."""

    _parameters: tuple[str, ...] = ("loc", "scale")

    def __init__(self, max_rows: int = _FIT_ROWS, random_state=None, **parameters):
        for name in self._parameters:
            setattr(self, name, parameters.get(name))
        self.max_rows = max_rows
        self.random_state = random_state

    @property
    def is_fitted(self) -> bool:
        """True once every parameter has a value (given, or estimated by `fit`)."""
        return hasattr(self, "loc_") or all(getattr(self, name) is not None for name in self._parameters)

    def _values(self, d: int) -> dict[str, np.ndarray]:
        if hasattr(self, "loc_"):
            return {name: getattr(self, name + "_") for name in self._parameters}
        if not self.is_fitted:
            raise ValueError(f"{type(self).__name__} has unset parameters: call fit(X) or pass them")
        return {name: _per_feature(getattr(self, name), d, name) for name in self._parameters}

    def fit(self, X) -> _Marginals:
        """Estimate the parameters left as None, per feature, from at most `max_rows` rows of X."""
        data = _fit_rows(X, self.max_rows, self.random_state)
        fitted = self._estimate(data)
        for name in self._parameters:
            given = getattr(self, name)
            value = fitted[name] if given is None else _per_feature(given, data.shape[1], name)
            setattr(self, name + "_", value)
        return self

    def _constants(self, X: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: torch.as_tensor(value, dtype=X.dtype, device=X.device)
                for name, value in self._values(X.shape[1]).items()}

    def marginal_log_prob(self, X: torch.Tensor) -> torch.Tensor:
        """log p_j(x_j) for every row and feature, shape (rows, d)."""
        c = self._constants(X)
        return self._standard_log_prob((X - c["loc"]) / c["scale"], c) - torch.log(c["scale"])

    def log_prob(self, X: torch.Tensor) -> torch.Tensor:
        """log p(x) = sum_j log p_j(x_j), shape (rows,)."""
        return self.marginal_log_prob(X).sum(dim=1)

    def marginal_derivatives(self, X: torch.Tensor) -> tuple | None:
        """(l', l'', l''', l'''') of each marginal log-density in closed form, or None (autodiff is used)."""
        if not hasattr(self, "_standard_derivatives"):
            return None
        c = self._constants(X)
        derivatives = self._standard_derivatives((X - c["loc"]) / c["scale"], c)
        return tuple(value / c["scale"] ** order for order, value in enumerate(derivatives, start=1))

    def sample(self, n: int, d: int | None = None, random_state=None) -> np.ndarray:
        """n rows from the density (d is needed only when every parameter is a scalar)."""
        dim = d if d is not None else max(np.size(v) for v in self._raw_values())
        if dim == 1 and d is None and not hasattr(self, "loc_"):
            raise ValueError("every parameter is a scalar: pass d, the number of features to sample")
        values = self._values(dim)
        rng = np.random.default_rng(random_state)
        return values["loc"] + values["scale"] * self._standard_sample(rng, (n, dim), values)

    def _raw_values(self):
        return [getattr(self, name + "_", getattr(self, name)) for name in self._parameters]


class StudentTMarginals(_Marginals):
    """Independent Student-t coordinates with `df` degrees of freedom (fit: scipy's MLE per feature)."""

    _parameters = ("loc", "scale", "df")

    def __init__(self, df=None, loc=None, scale=None, max_rows: int = _FIT_ROWS, random_state=None):
        super().__init__(max_rows, random_state, df=df, loc=loc, scale=scale)

    def _estimate(self, data: np.ndarray) -> dict[str, np.ndarray]:
        fits = np.array([stats.t.fit(column, **({"fdf": self.df} if self.df is not None else {}))
                         for column in data.T])
        return {"df": fits[:, 0], "loc": fits[:, 1], "scale": fits[:, 2]}

    @staticmethod
    def _standard_log_prob(z: torch.Tensor, c: dict) -> torch.Tensor:
        nu = c["df"]
        return (torch.lgamma((nu + 1) / 2) - torch.lgamma(nu / 2) - 0.5 * torch.log(nu * math.pi)
                - (nu + 1) / 2 * torch.log1p(z**2 / nu))

    @staticmethod
    def _standard_derivatives(z: torch.Tensor, c: dict) -> tuple[torch.Tensor, ...]:
        """Derivatives of -(nu+1)/2 log(1 + z^2/nu) in closed form (nested autodiff is far slower on the CPU)."""
        nu = c["df"]
        r = 1.0 / (nu + z**2)
        z2 = z**2
        return (-(nu + 1) * z * r, -(nu + 1) * (nu - z2) * r**2, -2.0 * (nu + 1) * z * (z2 - 3.0 * nu) * r**3,
                6.0 * (nu + 1) * (z2**2 - 6.0 * nu * z2 + nu**2) * r**4)

    @staticmethod
    def _standard_sample(rng, shape, values):
        return rng.standard_t(values["df"], size=shape)


class NormalLaplaceMarginals(_Marginals):
    """Laplace(0, b) + N(0, s^2) coordinates: a smoothed Laplace (Reed 2006). `shape` = 2 b^2 / variance.

    log p = log(1 / 2b) + logsumexp(s^2/2b^2 - z/b + log Phi(z/s - s/b), s^2/2b^2 + z/b + log Phi(-z/s - s/b))
    with b, s in units of `scale` (the standard deviation). `fit` matches mean, variance and kurtosis.
    """

    _parameters = ("loc", "scale", "shape")

    def __init__(self, shape=None, loc=None, scale=None, max_rows: int = _FIT_ROWS, random_state=None):
        super().__init__(max_rows, random_state, shape=shape, loc=loc, scale=scale)

    def _estimate(self, data: np.ndarray) -> dict[str, np.ndarray]:
        excess = stats.kurtosis(data, axis=0)
        return {"loc": data.mean(axis=0), "scale": data.std(axis=0),
                "shape": np.clip(np.sqrt(np.clip(excess, 0.0, None) / 3.0), 1e-3, _MAX_SHAPE_SHARE)}

    @staticmethod
    def _widths(c: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.sqrt(c["shape"] / 2.0), torch.sqrt(1.0 - c["shape"])

    @classmethod
    def _standard_log_prob(cls, z: torch.Tensor, c: dict) -> torch.Tensor:
        b, s = cls._widths(c)
        lift = s**2 / (2.0 * b**2)
        left = lift - z / b + torch.special.log_ndtr(z / s - s / b)
        right = lift + z / b + torch.special.log_ndtr(-z / s - s / b)
        return torch.logaddexp(left, right) - torch.log(2.0 * b)

    @classmethod
    def _standard_sample(cls, rng, shape, values):
        b, s = np.sqrt(values["shape"] / 2.0), np.sqrt(1.0 - values["shape"])
        return rng.laplace(0.0, b, size=shape) + s * rng.standard_normal(shape)


class SmoothedUniformMarginals(_Marginals):
    """Uniform(-h, h) + N(0, s^2) coordinates; `shape` = (h^2/3) / variance, the uniform's share of it.

    p(z) = [Phi((z + h)/s) - Phi((z - h)/s)] / 2h, evaluated on the side of 0 where it does not cancel.
    """

    _parameters = ("loc", "scale", "shape")

    def __init__(self, shape=None, loc=None, scale=None, max_rows: int = _FIT_ROWS, random_state=None):
        super().__init__(max_rows, random_state, shape=shape, loc=loc, scale=scale)

    def _estimate(self, data: np.ndarray) -> dict[str, np.ndarray]:
        excess = stats.kurtosis(data, axis=0)
        return {"loc": data.mean(axis=0), "scale": data.std(axis=0),
                "shape": np.clip(np.sqrt(np.clip(-excess, 0.0, None) / 1.2), 1e-3, _MAX_SHAPE_SHARE)}

    @staticmethod
    def _standard_log_prob(z: torch.Tensor, c: dict) -> torch.Tensor:
        h, s = torch.sqrt(3.0 * c["shape"]), torch.sqrt(1.0 - c["shape"])
        folded = -torch.abs(z)  # p is even: evaluate at -|z| <= 0, where Phi((z+h)/s) dominates
        upper, lower = torch.special.log_ndtr((folded + h) / s), torch.special.log_ndtr((folded - h) / s)
        return upper + torch.log1p(-torch.exp(lower - upper)) - torch.log(2.0 * h)

    @staticmethod
    def _standard_sample(rng, shape, values):
        h, s = np.sqrt(3.0 * values["shape"]), np.sqrt(1.0 - values["shape"])
        return rng.uniform(-h, h, size=shape) + s * rng.standard_normal(shape)


class MultivariateT:
    """The multivariate Student-t: an elliptical density with location, scatter matrix and `df` > 2.

    log p = -(df + d)/2 log(1 + (x - loc)^T scatter^{-1} (x - loc) / df) + const. `fit` takes the mean, the
    covariance times (df - 2)/df, and, if df is None, df from Mardia's kurtosis d(d+2)(df-2)/(df-4).
    """

    def __init__(self, df=None, loc=None, scatter=None, max_rows: int = _FIT_ROWS, random_state=None):
        self.df = df
        self.loc = loc
        self.scatter = scatter
        self.max_rows = max_rows
        self.random_state = random_state

    @property
    def is_fitted(self) -> bool:
        """True once df, loc and scatter are known."""
        return hasattr(self, "df_") or all(v is not None for v in (self.df, self.loc, self.scatter))

    def fit(self, X) -> MultivariateT:
        """Estimate the parameters left as None from at most `max_rows` rows of X."""
        data = _fit_rows(X, self.max_rows, self.random_state)
        n, d = data.shape
        loc = data.mean(axis=0) if self.loc is None else np.asarray(self.loc, dtype=np.float64)
        cov = np.cov(data, rowvar=False).reshape(d, d)
        if self.df is None:
            centred = data - loc
            kurtosis = np.mean(np.sum(centred @ np.linalg.inv(cov) * centred, axis=1) ** 2) / (d * (d + 2))
            df = float(np.clip((4.0 * kurtosis - 2.0) / (kurtosis - 1.0), 4.5, 1e3)) if kurtosis > 1.0 else 1e3
        else:
            df = float(self.df)
        self.df_, self.loc_ = df, loc
        self.scatter_ = cov * (df - 2.0) / df if self.scatter is None else np.asarray(self.scatter, dtype=np.float64)
        return self

    def _values(self) -> tuple[float, np.ndarray, np.ndarray]:
        if hasattr(self, "df_"):
            return self.df_, self.loc_, self.scatter_
        if not self.is_fitted:
            raise ValueError("MultivariateT has unset parameters: call fit(X) or pass df, loc and scatter")
        return float(self.df), np.asarray(self.loc, dtype=np.float64), np.asarray(self.scatter, dtype=np.float64)

    def log_prob(self, X: torch.Tensor) -> torch.Tensor:
        """log p(x) per row (the normalising constant included)."""
        df, loc, scatter = self._values()
        d = X.shape[1]
        chol = torch.linalg.cholesky(torch.as_tensor(scatter, dtype=X.dtype, device=X.device))
        centred = X - torch.as_tensor(loc, dtype=X.dtype, device=X.device)
        whitened = torch.linalg.solve_triangular(chol, centred.T, upper=False).T
        constant = (math.lgamma((df + d) / 2) - math.lgamma(df / 2) - d / 2 * math.log(df * math.pi)
                    - float(torch.log(torch.diagonal(chol)).sum()))
        return constant - (df + d) / 2 * torch.log1p((whitened**2).sum(dim=1) / df)

    def sample(self, n: int, random_state=None) -> np.ndarray:
        """n rows: loc + L z / sqrt(chi2_df / df) with scatter = L L^T."""
        df, loc, scatter = self._values()
        rng = np.random.default_rng(random_state)
        z = rng.standard_normal((n, loc.size)) @ np.linalg.cholesky(scatter).T
        return loc + z / np.sqrt(rng.chisquare(df, size=(n, 1)) / df)
