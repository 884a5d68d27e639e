"""The Fourier method for the first-layer bias (Janzamin, Sedghi, Anandkumar 2015, Procedure 2).

Conventions (the paper mixes them; these are the ones under which its formulas hold):

* Fourier transform with 2π in the exponent, F(ω) = ∫ f(x) e^{-j2π<ω,x>} dx, so the ridge function
  a2 σ(<a, x> + b) with unit-norm a has the transform a2 Σ(τ) e^{j2πbτ} on the line ω = τ a and zero off it.
* Frequencies on the one-sided cap Ω = {‖ω‖ = ρ, <ω, â> >= ρ(1 - ε²/2)} (the paper: ρ = 1/2). A two-sided
  cap |<ω, â>| >= ... (as printed) averages F(ω) with F(-ω) = conj F(ω) and leaves a real v with no phase.
* v = (1/n) Σ_i y_i e^{-j2π<ω_i, x_i>} / p(x_i), ω_i uniform on Ω. In the paper's idealisation
  E[v] = a2 Σ(ρ) e^{j2πρb} / |Ω|, so b = (∠v - ∠Σ(ρ)) / (2πρ) (= (∠v - ∠Σ(1/2)) / π at ρ = 1/2, which is
  unambiguous for b in (-1, 1)) and |a2| = |Ω| |v| / |Σ(ρ)|. Reading the paper's exponent e^{-j<ω,x>}
  literally is ρ = 1/(4π) here, and then its 1/π factor is wrong (the phase is b/2, not πb).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special

from .._backend import DEFAULT_CHUNK_ROWS
from ..activations import Activation, gaussian_derivative_expectation, get_activation
from .scale_bias import ScaleBias

__all__ = [
    "FourierBiasResult",
    "activation_fourier_transform",
    "cap_area",
    "fourier_bias",
    "gaussian_ball_log_density",
    "restrict_to_ball",
    "uniform_ball_log_density",
]

_TWO_PI_SQ = 2.0 * np.pi**2


def _csch(u):
    with np.errstate(over="ignore"):
        return 1.0 / np.sinh(u)


# Σ(τ) = ∫ σ(t) e^{-j2πτt} dt for τ != 0; the distributional parts (δ, δ') all sit at τ = 0.
_TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "sigmoid": lambda t: -1j * np.pi * _csch(_TWO_PI_SQ * t),
    "tanh": lambda t: -1j * np.pi * _csch(np.pi**2 * t),
    "relu": lambda t: -1.0 / (4 * np.pi**2 * t**2) + 0j,
    "softplus": lambda t: -_csch(_TWO_PI_SQ * t) / (2 * t) + 0j,
    "gelu": lambda t: -np.exp(-_TWO_PI_SQ * t**2) * (1.0 + 1.0 / (4 * np.pi**2 * t**2)) + 0j,
}


def activation_fourier_transform(activation: str | Activation, freq) -> np.ndarray:
    """Σ(τ) = ∫ σ(t) e^{-j2πτt} dt at non-zero frequencies τ (the Σ of Procedure 2), as a complex array.

    None of the registry's activations is integrable, so Σ is a tempered distribution; away from τ = 0 it is
    the function below (derived from the integrable derivative σ' or σ'' by Σ = FT(σ^(m)) / (j2πτ)^m):
    sigmoid -jπ csch(2π²τ) (plus δ(τ)/2), tanh -jπ csch(π²τ), relu -1/(4π²τ²) (plus δ' terms),
    softplus -csch(2π²τ)/(2τ), gelu -e^{-2π²τ²}(1 + 1/(4π²τ²)). Raises ValueError at τ = 0 and
    NotImplementedError for an activation outside these five.
    """
    act = get_activation(activation)
    if act.name not in _TRANSFORMS or act is not get_activation(act.name):  # a custom Activation
        raise NotImplementedError(
            f"no Fourier transform for activation {act.name!r}; supported: {sorted(_TRANSFORMS)}")
    tau = np.asarray(freq, dtype=float)
    if not np.all(np.isfinite(tau)) or np.any(tau == 0):
        raise ValueError("freq must be finite and non-zero (the transform is a distribution at 0)")
    return np.asarray(_TRANSFORMS[act.name](tau), dtype=complex)


def cap_area(dim: int, epsilon: float, radius: float = 0.5) -> float:
    """|Ω|: surface area of {‖ω‖ = radius, <ω, â> >= radius (1 - ε²/2)} in R^dim (1 for dim = 1, a point).

    Half the sphere's area times the regularised incomplete beta I_{sin²θ}((dim-1)/2, 1/2), θ = arccos(1-ε²/2).
    """
    _check_cap(dim, epsilon, radius)
    if dim == 1:
        return 1.0
    sin2 = np.sin(np.arccos(1 - epsilon**2 / 2)) ** 2
    half_sphere = np.pi ** (dim / 2) / special.gamma(dim / 2) * radius ** (dim - 1)
    return float(half_sphere * special.betainc((dim - 1) / 2, 0.5, sin2))


def _check_cap(dim, epsilon, radius):
    if dim < 1:
        raise ValueError(f"dimension must be >= 1, got {dim}")
    if not 0 < epsilon <= np.sqrt(2):
        raise ValueError(f"epsilon must be in (0, sqrt(2)] (a cap of at most a hemisphere), got {epsilon}")
    if not (np.isfinite(radius) and radius > 0):
        raise ValueError(f"frequency_radius must be positive, got {radius}")


def _cap_phases(X, x_dot_a, direction, n_freq, radius, epsilon, rng):
    """<ω, x> for each row of X and n_freq frequencies drawn uniformly from the cap around `direction`."""
    rows, dim = X.shape
    if dim == 1:
        return np.repeat(radius * x_dot_a[:, None], n_freq, axis=1)
    a = (dim - 1) / 2
    top = special.betainc(a, 0.5, np.sin(np.arccos(1 - epsilon**2 / 2)) ** 2)
    # The polar angle φ has density ∝ sin^{dim-2} φ on [0, θ]; invert its CDF I_{sin²φ}(a, 1/2) / top.
    sin2 = special.betaincinv(a, 0.5, rng.uniform(size=(rows, n_freq)) * top)
    g = rng.standard_normal((rows, n_freq, dim))
    g_a = g @ direction
    perp_norm = np.sqrt(np.maximum(np.einsum("rmd,rmd->rm", g, g) - g_a**2, np.finfo(float).tiny))
    u_x = (np.einsum("rmd,rd->rm", g, X) - g_a * x_dot_a[:, None]) / perp_norm
    return radius * (np.sqrt(1 - sin2) * x_dot_a[:, None] + np.sqrt(sin2) * u_x)


@dataclass(frozen=True)
class FourierBiasResult:
    """Output of `fourier_bias`, one entry per neuron (column of `directions`).

    `v` is the complex Monte-Carlo average of Procedure 2 and `v_stderr` its standard error
    sqrt((Var Re z + Var Im z) / n) over the per-row terms z_i. `bias_stderr` and `coef_magnitude_stderr` are
    delta-method errors from the parts of that noise across and along v (meaningful only when `snr` >> 1;
    at snr ≲ 2 the phase, hence the bias, is noise). These errors are about E[v], which equals the paper's
    idealised value only under its assumptions (see `fourier_bias`), so they do not bound the truncation bias.
    """

    bias: np.ndarray
    coef_magnitude: np.ndarray
    v: np.ndarray
    v_stderr: np.ndarray
    bias_stderr: np.ndarray
    coef_magnitude_stderr: np.ndarray
    cap_area: float
    transform: complex
    frequency_radius: float
    epsilon: float

    @property
    def v_abs(self) -> np.ndarray:
        """|v| per neuron."""
        return np.abs(self.v)

    @property
    def snr(self) -> np.ndarray:
        """|v| / v_stderr per neuron."""
        return np.abs(self.v) / self.v_stderr


def _as_finite_2d(name, a):
    a = np.asarray(a, dtype=float)
    if a.ndim != 2 or min(a.shape) < 1:
        raise ValueError(f"{name} must be a non-empty 2-D array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return a


def _inverse_density(density, X, log_density):
    values = np.asarray(density(X), dtype=float)
    if values.shape != (X.shape[0],):
        raise ValueError(f"density must return one value per row, shape ({X.shape[0]},); got {values.shape}")
    if np.any(np.isnan(values)):
        raise ValueError("density returned NaN")
    with np.errstate(divide="ignore", over="ignore"):
        inverse = np.exp(-values) if log_density else 1.0 / values
    bad = ~(np.isfinite(inverse) & (inverse > 0))
    if bad.any():
        raise ValueError(f"p(x) is zero, negative or 1/p(x) overflows at row {int(np.argmax(bad))}: rows must lie "
                         "inside the density's support (see restrict_to_ball)")
    return inverse


def fourier_bias(X, y, directions, density: Callable[[np.ndarray], np.ndarray], activation: str | Activation,
                 *, log_density: bool = False, epsilon: float = 0.1, n_frequencies: int = 1,
                 frequency_radius: float = 0.5, coef_sign=None, random_state=None,
                 chunk_rows: int = DEFAULT_CHUNK_ROWS) -> FourierBiasResult:
    """First-layer biases b1 and |a2| by the Fourier method (Janzamin et al. 2015, Procedure 2).

    For each unit column â_l of `directions` (d, k): draw `n_frequencies` frequencies per row uniformly from
    the cap Ω_l (angle to â_l at most arccos(1 - ε²/2) ≈ ε, norm `frequency_radius` ρ), form
    v_l = mean_i y_i e^{-j2π<ω_i, x_i>} / p(x_i), and return b̂_l = (∠v_l - ∠Σ(ρ)) / (2πρ) wrapped to
    [-1/(2ρ), 1/(2ρ)) and |â2_l| = |Ω_l| |v_l| / |Σ(ρ)|. `density(X)` returns p(x) per row, or log p(x) if
    `log_density`. Rows are put in a canonical (lexicographic) order before frequencies are drawn, so the
    result does not depend on the order of the rows.

    `coef_sign` (k values ±1; default all +1, the paper's tacit choice) is sign(a2_l). Because
    -a2 e^{j2πρb} = a2 e^{j2πρ(b ± 1/(2ρ))}, the phase fixes b only modulo 1/(2ρ) (= 1 at ρ = 1/2, not the
    width 2 of the paper's b in [-1, 1]) unless the sign is known, e.g. from the tensor weights λ_l.

    The paper's idealisation E[v_l] = a2_l Σ(ρ) e^{j2πρ b_l} / |Ω_l| needs: unit-norm columns with the true
    sign (with scale s the phase is 2πρb/s + ∠Σ(ρ/s), so b and s are confounded; â = -a gives
    b̂ = -b - ∠Σ(ρ)/(πρ), i.e. 1 - b for the sigmoid at ρ = 1/2); |b| < 1/(2ρ) (otherwise b̂ aliases by
    multiples of 1/ρ); other neurons' directions outside every cap; and the integral ∫ f(x) e^{-j2π<ω,x>} dx
    over all of R^d. What v estimates without bias is that integral over the support of p only, and:

    * Unbounded support (x ~ N(0, I)): E[y²/p(x)²] = ∫ y² / p(x) dx is infinite, so v has infinite variance
      and `v_stderr` is meaningless. The honest variant restricts to a ball (`restrict_to_ball` with
      `gaussian_ball_log_density`, the truncated density with its normalisation): the bounded-support case
      the paper's concentration argument covers, with a variance that grows like the ball's volume.
    * Bounded support: σ does not decay, so the support's edge adds a term that shrinks neither with n nor
      with the radius r. In d = 1, on [-r, r], it is exactly (f(-r) e^{jθr} - f(r) e^{-jθr}) / (jθ),
      θ = 2πρ, of size up to 2|a2|/π at ρ = 1/2, against the signal |a2| |Σ(1/2)| = 3.2e-4 |a2| (sigmoid)
      or 0.045 |a2| (tanh). The estimate is then edge-dominated even at infinite n, and `snr` cannot tell.
      Measured in benchmarks/fourier_bias_error.py.
    """
    X = _as_finite_2d("X", X)
    n, dim = X.shape
    if n < 2:
        raise ValueError(f"need at least 2 rows for a Monte-Carlo standard error, got {n}")
    y = np.asarray(y, dtype=float)
    if y.shape != (n,):
        raise ValueError(f"y must be 1-D with {n} entries to match X, got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError("y contains NaN or inf")
    directions = _as_finite_2d("directions", directions)
    if directions.shape[0] != dim:
        raise ValueError(f"directions must have shape (d, k) with d = {dim}, got {directions.shape}")
    norms = np.linalg.norm(directions, axis=0)
    if not np.allclose(norms, 1.0, rtol=0, atol=1e-6):
        raise ValueError(f"directions must have unit-norm columns (Procedure 2 assumes ‖a_l‖ = 1); got norms "
                         f"{np.round(norms, 6)}")
    if int(n_frequencies) != n_frequencies or n_frequencies < 1:
        raise ValueError(f"n_frequencies must be a positive integer, got {n_frequencies}")
    _check_cap(dim, epsilon, frequency_radius)
    transform = complex(activation_fourier_transform(activation, frequency_radius))
    k = directions.shape[1]
    sign = np.ones(k) if coef_sign is None else np.asarray(coef_sign, dtype=float)
    if sign.shape != (k,) or not np.all(np.abs(sign) == 1):
        raise ValueError(f"coef_sign must hold {k} values, each +1 or -1; got {coef_sign!r}")
    inv_p = _inverse_density(density, X, log_density)

    order = np.lexsort(np.vstack([y, X.T[::-1]]))
    X, y, weight = X[order], y[order], (y * inv_p)[order]
    rng = np.random.default_rng(random_state)
    v = np.empty(k, dtype=complex)
    se_along, se_across = np.empty(k), np.empty(k)
    for j in range(k):
        z = np.empty(n, dtype=complex)
        for start in range(0, n, chunk_rows):
            rows = slice(start, start + chunk_rows)
            x_dot_a = X[rows] @ directions[:, j]
            phases = _cap_phases(X[rows], x_dot_a, directions[:, j], int(n_frequencies), frequency_radius,
                                 epsilon, rng)
            z[rows] = weight[rows] * np.exp(-2j * np.pi * phases).mean(axis=1)
        v[j] = z.mean()
        rotated = z * np.exp(-1j * np.angle(v[j]))
        se_along[j] = rotated.real.std(ddof=1) / np.sqrt(n)
        se_across[j] = rotated.imag.std(ddof=1) / np.sqrt(n)

    omega = 2 * np.pi * frequency_radius
    period = 1.0 / frequency_radius
    bias = ((np.angle(sign * v) - np.angle(transform)) / omega + period / 2) % period - period / 2
    area = cap_area(dim, epsilon, frequency_radius)
    return FourierBiasResult(
        bias=bias,
        coef_magnitude=area * np.abs(v) / abs(transform),
        v=v,
        v_stderr=np.hypot(se_along, se_across),
        bias_stderr=se_across / (np.abs(v) * omega),
        coef_magnitude_stderr=area * se_along / abs(transform),
        cap_area=area,
        transform=transform,
        frequency_radius=float(frequency_radius),
        epsilon=float(epsilon),
    )


def uniform_ball_log_density(radius: float) -> Callable[[np.ndarray], np.ndarray]:
    """log p(x) of the uniform distribution on the ball ‖x‖ <= radius (-inf outside)."""
    if not radius > 0:
        raise ValueError(f"radius must be positive, got {radius}")

    def log_density(X):
        X = np.asarray(X, dtype=float)
        dim = X.shape[1]
        log_volume = dim / 2 * np.log(np.pi) - special.gammaln(dim / 2 + 1) + dim * np.log(radius)
        return np.where(np.linalg.norm(X, axis=1) <= radius, -log_volume, -np.inf)

    return log_density


def gaussian_ball_log_density(radius: float) -> Callable[[np.ndarray], np.ndarray]:
    """log p(x) of N(0, I_d) conditioned on ‖x‖ <= radius: log φ(x) - log P(χ²_d <= radius²), -inf outside."""
    if not radius > 0:
        raise ValueError(f"radius must be positive, got {radius}")

    def log_density(X):
        X = np.asarray(X, dtype=float)
        dim = X.shape[1]
        sq = np.einsum("ij,ij->i", X, X)
        log_mass = np.log(special.gammainc(dim / 2, radius**2 / 2))
        inside = -sq / 2 - dim / 2 * np.log(2 * np.pi) - log_mass
        return np.where(sq <= radius**2, inside, -np.inf)

    return log_density


def restrict_to_ball(X, y, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """The rows with ‖x‖ <= radius: i.i.d. Gaussian rows so kept follow `gaussian_ball_log_density(radius)`."""
    X, y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
    keep = np.linalg.norm(X, axis=1) <= radius
    return X[keep], y[keep]


def fourier_scale_bias(X, y, first, score, activation, *, random_state=None):
    """NN-LIFT's Fourier step wired for the estimator (scale_bias="fourier"), under a fitted Gaussian score.

    Inputs are whitened, x~ = L^{-1}(x - mu) with Sigma = L L^T, and restricted to the ball ‖x~‖ <= sqrt(d) + 2
    (the truncated density, see `gaussian_ball_log_density`); each neuron gets the paper's unit-norm column
    in those coordinates, i.e. scale 1 / ‖L^T a‖ in x's, and its bias from `fourier_bias`. sign(a2) is read
    off the tensor weight, sign(lambda_j E[sigma^(m)(z)]), where that expectation is non-zero. This inherits
    the edge bias documented in `fourier_bias` (measured in BENCHMARKS.md): it is the faithful procedure, not
    the default.
    """
    if not hasattr(score, "cov_"):
        raise ValueError("scale_bias='fourier' needs a fitted GaussianScore (its density enters the estimator)")
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    chol = np.linalg.cholesky(score.cov_)
    whitened = np.linalg.solve(chol, (X - score.mean_).T).T
    mapped = chol.T @ first.directions
    norms = np.linalg.norm(mapped, axis=0)
    radius = np.sqrt(X.shape[1]) + 2.0
    X_ball, y_ball = restrict_to_ball(whitened, y, radius)
    expectations = np.array([gaussian_derivative_expectation(activation, int(m))
                             for m in first.diagnostics["component_orders"]])
    signs = np.where(np.abs(expectations) > 1e-8, np.sign(first.weights * expectations), 1.0)
    result = fourier_bias(X_ball, y_ball, mapped / norms, gaussian_ball_log_density(radius), activation,
                          log_density=True, coef_sign=signs, random_state=random_state)
    scale = 1.0 / norms
    bias = result.bias - scale * (first.directions.T @ score.mean_)
    coef = signs * result.coef_magnitude
    hidden = get_activation(activation).numpy(X @ (first.directions * scale) + bias)
    intercept = float(np.mean(y - hidden @ coef))
    r2 = 1.0 - float(np.mean((hidden @ coef + intercept - y) ** 2) / max(np.var(y), 1e-300))
    return ScaleBias(scale, bias, coef, intercept, r2)
