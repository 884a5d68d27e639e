"""Planted two-layer teachers y = a2^T sigma(A1^T x + b1) + b2 + noise, with Gaussian or other inputs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .activations import get_activation

__all__ = ["GaussianMixtureInputs", "StudentTInputs", "Teacher", "make_teacher"]


@dataclass(frozen=True)
class Teacher:
    """A planted network and samples from it. `first_layer` columns are the true weight vectors a_j."""

    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    first_layer: np.ndarray
    bias: np.ndarray
    coef: np.ndarray
    intercept: float
    noise: float
    activation: str
    inputs: object = "gaussian"

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The noiseless teacher E[y | x]."""
        act = get_activation(self.activation)
        return act.numpy(np.asarray(X) @ self.first_layer + self.bias) @ self.coef + self.intercept

    @property
    def noise_var(self) -> float:
        """Variance of the label noise: the Bayes risk (noise floor) of the squared loss."""
        return self.noise**2


def make_teacher(n: int, d: int, k: int, activation: str = "sigmoid", noise: float = 0.05,
                 weight_scale: float = 1.0, random_state=None, n_test: int = 0, *,
                 orthogonal: bool = False, bias_range: float = 1.0,
                 coef_range: tuple[float, float] = (0.5, 1.5), intercept: float = 0.0, inputs="gaussian") -> Teacher:
    """Sample a planted teacher and n (+ n_test) rows with x ~ N(0, I_d), or from `inputs`.

    Columns of the first layer are uniform random unit vectors (orthonormal if `orthogonal`) times
    `weight_scale`; biases ~ U(-bias_range, bias_range); output weights ~ ±U(coef_range); Gaussian label noise
    of standard deviation `noise`. `inputs` is "gaussian" or a sampler `inputs(rng, m, d)` such as
    `StudentTInputs(df)` or `GaussianMixtureInputs(...)`, whose density the matching score must describe.
    """
    if min(n, d, k) < 1 or n_test < 0:
        raise ValueError("n, d and k must be positive and n_test non-negative")
    if orthogonal and k > d:
        raise ValueError(f"orthogonal=True needs k <= d, got k={k}, d={d}")
    act = get_activation(activation)
    rng = np.random.default_rng(random_state)
    if orthogonal:
        directions = np.linalg.qr(rng.standard_normal((d, k)))[0]
    else:
        directions = rng.standard_normal((d, k))
        directions /= np.linalg.norm(directions, axis=0)
    first_layer = weight_scale * directions
    bias = rng.uniform(-bias_range, bias_range, size=k)
    coef = rng.choice([-1.0, 1.0], size=k) * rng.uniform(*coef_range, size=k)

    def sample(m: int) -> tuple[np.ndarray, np.ndarray]:
        X = rng.standard_normal((m, d)) if inputs == "gaussian" else np.asarray(inputs(rng, m, d), dtype=float)
        y = act.numpy(X @ first_layer + bias) @ coef + intercept + noise * rng.standard_normal(m)
        return X, y

    X, y = sample(n)
    X_test, y_test = sample(n_test)
    return Teacher(X, y, X_test, y_test, first_layer, bias, coef, float(intercept), float(noise), act.name, inputs)


@dataclass(frozen=True)
class StudentTInputs:
    """Independent Student-t coordinates with `df` > 2 degrees of freedom, scaled to unit variance."""

    df: float = 5.0

    @property
    def scale(self) -> float:
        """The t scale giving unit variance: sqrt((df - 2) / df)."""
        return float(np.sqrt((self.df - 2.0) / self.df))

    def __call__(self, rng: np.random.Generator, m: int, d: int) -> np.ndarray:
        return self.scale * rng.standard_t(self.df, size=(m, d))


@dataclass(frozen=True)
class GaussianMixtureInputs:
    """A Gaussian mixture: component c with probability weights[c], mean means[c], covariance covariances[c]."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray

    @classmethod
    def random(cls, d: int, n_components: int = 3, separation: float = 2.0, random_state=None
               ) -> GaussianMixtureInputs:
        """Means `separation` apart from the origin along random directions, covariances with spectra in [0.3, 1],
        weights from a Dirichlet(5, ..., 5); the overall mean is moved to 0."""
        rng = np.random.default_rng(random_state)
        weights = rng.dirichlet(np.full(n_components, 5.0))
        means = rng.standard_normal((n_components, d))
        means *= separation / np.linalg.norm(means, axis=1, keepdims=True)
        means -= weights @ means
        rotations = [np.linalg.qr(rng.standard_normal((d, d)))[0] for _ in range(n_components)]
        covariances = np.stack([q * rng.uniform(0.3, 1.0, size=d) @ q.T for q in rotations])
        return cls(weights, means, covariances)

    def __call__(self, rng: np.random.Generator, m: int, d: int) -> np.ndarray:
        if d != self.means.shape[1]:
            raise ValueError(f"this mixture has {self.means.shape[1]} features, {d} were asked for")
        labels = rng.choice(len(self.weights), size=m, p=self.weights)
        chols = np.linalg.cholesky(self.covariances)
        noise = rng.standard_normal((m, d))
        return self.means[labels] + np.einsum("mij,mj->mi", chols[labels], noise)
