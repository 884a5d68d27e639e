"""Tests for the Fourier method (Janzamin, Sedghi, Anandkumar 2015, Procedure 2)."""

import numpy as np
import pytest
from scipy import integrate, special, stats

from nnlift.activations import Activation, get_activation
from nnlift.lift.fourier import (
    _cap_phases,
    activation_fourier_transform,
    cap_area,
    fourier_bias,
    gaussian_ball_log_density,
    restrict_to_ball,
    uniform_ball_log_density,
)

FREQS = [0.05, 1 / (4 * np.pi), 0.3, 0.5, 0.9]


def _ft_quad(g, tau, lo=-60.0, hi=60.0):
    """∫ g(t) e^{-j2πτt} dt over [lo, hi] by QAWO quadrature (g decays well inside the interval)."""
    w = 2 * np.pi * tau
    re = integrate.quad(g, lo, hi, weight="cos", wvar=w, limit=400, epsabs=1e-14)[0]
    im = -integrate.quad(g, lo, hi, weight="sin", wvar=w, limit=400, epsabs=1e-14)[0]
    return re + 1j * im


@pytest.mark.parametrize("tau", FREQS)
@pytest.mark.parametrize(("name", "order", "derivative"), [
    ("sigmoid", 1, lambda t: special.expit(t) * special.expit(-t)),
    ("tanh", 1, lambda t: 1 / np.cosh(t) ** 2),
    ("softplus", 2, lambda t: special.expit(t) * special.expit(-t)),
    ("gelu", 2, lambda t: (2 - t**2) * stats.norm.pdf(t)),
])
def test_transform_matches_quadrature_of_integrable_derivative(name, order, derivative, tau):
    # FT(σ^(m))(τ) = (j2πτ)^m Σ(τ) for τ != 0, and σ^(m) is integrable, so quadrature needs no regularisation.
    expected = _ft_quad(derivative, tau) / (2j * np.pi * tau) ** order
    got = activation_fourier_transform(name, tau)
    assert abs(got - expected) <= 1e-7 * abs(expected) + 1e-12


@pytest.mark.parametrize("tau", FREQS)
def test_relu_transform_is_abel_limit_of_quadrature(tau):
    alpha = 1e-3
    w = 2 * np.pi * tau
    g = lambda t: t * np.exp(-alpha * t)  # noqa: E731
    damped = (integrate.quad(g, 0, np.inf, weight="cos", wvar=w)[0]
              - 1j * integrate.quad(g, 0, np.inf, weight="sin", wvar=w)[0])
    exact = activation_fourier_transform("relu", tau)
    assert abs(damped - 1 / (alpha + 1j * w) ** 2) < 1e-6 * abs(damped)
    assert abs(damped - exact) < 3 * alpha / w * abs(exact)


def test_sigmoid_transform_at_paper_frequency():
    # Σ(1/2) = -jπ csch(π²): the paper's signal, 3.2e-4 in size.
    value = activation_fourier_transform("sigmoid", 0.5)
    assert value.real == 0 and value.imag == pytest.approx(-np.pi / np.sinh(np.pi**2), rel=1e-12)
    assert abs(value) == pytest.approx(3.25e-4, rel=0.01)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu", "softplus", "gelu"])
def test_transform_is_hermitian(name):
    tau = np.array([0.1, 0.5, 2.0])
    np.testing.assert_allclose(activation_fourier_transform(name, -tau),
                               np.conj(activation_fourier_transform(name, tau)), rtol=1e-14)


def test_transform_rejects_zero_and_unsupported():
    with pytest.raises(ValueError, match="non-zero"):
        activation_fourier_transform("sigmoid", [0.5, 0.0])
    custom = Activation("sigmoid", get_activation("relu").torch, np.abs, np.sign)
    with pytest.raises(NotImplementedError, match="supported"):
        activation_fourier_transform(custom, 0.5)


@pytest.mark.parametrize("eps", [0.1, 0.7, np.sqrt(2)])
def test_cap_area_closed_forms(eps):
    theta = np.arccos(1 - eps**2 / 2)
    assert cap_area(1, eps) == 1.0
    assert cap_area(2, eps, 0.5) == pytest.approx(2 * 0.5 * theta, rel=1e-12)
    assert cap_area(3, eps, 0.5) == pytest.approx(2 * np.pi * 0.25 * (1 - np.cos(theta)), rel=1e-12)
    # Monte Carlo: fraction of the sphere in the cap times the sphere's area, d = 5.
    if eps < 0.5:
        return
    g = np.random.default_rng(0).standard_normal((400_000, 5))
    frac = np.mean(g[:, 0] / np.linalg.norm(g, axis=1) >= np.cos(theta))
    sphere = 2 * np.pi**2.5 / special.gamma(2.5) * 0.5**4
    assert cap_area(5, eps, 0.5) == pytest.approx(frac * sphere, rel=0.02)


def test_cap_frequencies_are_uniform_on_the_cap():
    # d = 3: the height <ω, â>/ρ of a uniform point of a spherical cap is uniform (Archimedes).
    rng = np.random.default_rng(1)
    direction = np.array([0.0, 0.6, 0.8])
    eps, rho, rows = 0.6, 0.5, 20_000
    x = np.tile(direction, (rows, 1))
    heights = _cap_phases(x, x @ direction, direction, 2, rho, eps, rng).ravel() / rho
    lo = 1 - eps**2 / 2
    assert heights.min() >= lo - 1e-12 and heights.max() <= 1 + 1e-12
    assert stats.kstest(heights, stats.uniform(lo, 1 - lo).cdf).pvalue > 1e-3
    # Across the cap: for x ⊥ â, E<ω, x>² = ρ² E[sin²φ] / (d - 1) and E<ω, x> = 0.
    perp = np.tile([1.0, 0.0, 0.0], (rows, 1))
    across = _cap_phases(perp, perp @ direction, direction, 1, rho, eps, rng).ravel()
    mean_sin2 = 1 - np.mean(heights**2)
    assert abs(across.mean()) < 4 * across.std() / np.sqrt(rows)
    assert np.mean(across**2) == pytest.approx(rho**2 * mean_sin2 / 2, rel=0.05)


def _uniform_ball(n, d, radius, rng):
    g = rng.standard_normal((n, d))
    return g / np.linalg.norm(g, axis=1, keepdims=True) * radius * rng.uniform(size=(n, 1)) ** (1 / d)


def _truncated_expectation_2d(f, radius, eps, rho, nt=1500, nphi=200):
    """E[v] for x uniform on the disc: cap average of ∫_disc f(<a,x>) e^{-j2π<ω,x>} dx, by quadrature."""
    t, wt = np.polynomial.legendre.leggauss(nt)
    t, wt = t * radius, wt * radius
    theta = np.arccos(1 - eps**2 / 2)
    phi, wp = np.polynomial.legendre.leggauss(nphi)
    phi, wp = phi * theta, wp / 2  # uniform average over φ in [-θ, θ]
    half_chord = np.sqrt(radius**2 - t**2)
    along, across = rho * np.cos(phi)[:, None], rho * np.sin(phi)[:, None]
    chord_ft = 2 * half_chord * np.sinc(2 * across * half_chord)  # ∫_{-h}^{h} e^{-j2πks} ds
    return np.sum(wp * ((f(t) * np.exp(-2j * np.pi * along * t) * chord_ft) @ wt))


@pytest.mark.parametrize(("dim", "n_freq"), [(1, 1), (2, 1), (2, 4)])
def test_v_is_unbiased_for_the_truncated_transform_not_the_paper_value(dim, n_freq):
    # E[v] is the transform of f·1_support averaged over the cap; for the sigmoid the support's edge swamps
    # the paper's a2 Σ(1/2) e^{jπb} / |Ω| by orders of magnitude.
    rng = np.random.default_rng(2)
    radius, b, a2, eps, n = 2.0, 0.3, 1.3, 0.5, 200_000
    f = lambda t: a2 * special.expit(t + b)  # noqa: E731
    X = _uniform_ball(n, dim, radius, rng)
    direction = np.zeros((dim, 1))
    direction[0] = 1.0
    y = f(X[:, 0]) + 0.05 * rng.standard_normal(n)
    res = fourier_bias(X, y, direction, uniform_ball_log_density(radius), "sigmoid", log_density=True,
                       epsilon=eps, n_frequencies=n_freq, random_state=3)
    if dim == 1:
        expected = _ft_quad(f, 0.5, -radius, radius)
    else:
        expected = _truncated_expectation_2d(f, radius, eps, 0.5)
    assert abs(res.v[0] - expected) < 4 * res.v_stderr[0]
    ideal = a2 * res.transform * np.exp(1j * np.pi * b) / res.cap_area
    assert abs(expected - ideal) > 100 * abs(ideal)


@pytest.mark.parametrize(("b", "a2", "sign"), [(0.3, 1.2, 1.0), (-0.7, -0.8, -1.0)])
def test_recovers_planted_tanh_neuron_where_the_edge_term_vanishes(b, a2, sign):
    # d = 1, x ~ U[-r, r] with r a half-integer: the edge term -2 a2 cos(πr)/(jπ) of the truncated transform
    # is zero for tanh (odd), so E[v] is the paper's value up to O(e^{-2(r - |b|)}) and b̂ must agree with b
    # within its own Monte-Carlo error.
    rng = np.random.default_rng(4)
    radius, n = 3.5, 1_000_000
    X = rng.uniform(-radius, radius, size=(n, 1))
    y = a2 * np.tanh(sign * X[:, 0] + b) + 0.05 * rng.standard_normal(n)
    args = (X, y, np.full((1, 1), sign), uniform_ball_log_density(radius), "tanh")
    res = fourier_bias(*args, log_density=True, coef_sign=[np.sign(a2)], random_state=5)
    assert res.snr[0] > 5 and res.bias_stderr[0] < 0.05
    assert abs(res.bias[0] - b) < 4 * res.bias_stderr[0]
    assert abs(res.coef_magnitude[0] - abs(a2)) < 4 * res.coef_magnitude_stderr[0]
    # Without the sign of a2 the phase only fixes b modulo 1/(2ρ) = 1.
    unsigned = fourier_bias(*args, log_density=True, random_state=5)
    shift = 0.0 if a2 > 0 else 1.0
    assert abs((unsigned.bias[0] - b - shift + 1) % 2 - 1) < 4 * res.bias_stderr[0]


def test_invariant_to_row_permutation():
    rng = np.random.default_rng(6)
    X = _uniform_ball(3000, 3, 2.0, rng)
    A = np.linalg.qr(rng.standard_normal((3, 2)))[0]
    y = special.expit(X @ A + [0.2, -0.4]) @ [1.0, -0.7]
    density = uniform_ball_log_density(2.0)
    kw = dict(log_density=True, epsilon=0.3, n_frequencies=2, random_state=7, chunk_rows=700)
    ref = fourier_bias(X, y, A, density, "sigmoid", **kw)
    perm = rng.permutation(len(y))
    got = fourier_bias(X[perm], y[perm], A, density, "sigmoid", **kw)
    np.testing.assert_array_equal(got.v, ref.v)
    np.testing.assert_array_equal(got.bias, ref.bias)
    np.testing.assert_array_equal(got.v_stderr, ref.v_stderr)


def test_density_and_log_density_agree():
    rng = np.random.default_rng(8)
    X = _uniform_ball(2000, 2, 1.5, rng)
    y = np.tanh(X[:, 0])
    log_p = uniform_ball_log_density(1.5)
    a = fourier_bias(X, y, np.eye(2)[:, :1], log_p, "tanh", log_density=True, random_state=0)
    b = fourier_bias(X, y, np.eye(2)[:, :1], lambda Z: np.exp(log_p(Z)), "tanh", random_state=0)
    np.testing.assert_allclose(a.v, b.v, rtol=1e-12)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_ball_densities_are_normalised(dim):
    radius = 1.7
    for make in (uniform_ball_log_density, gaussian_ball_log_density):
        log_p = make(radius)

        def radial(s, log_p=log_p):
            x = np.zeros((1, dim))
            x[0, 0] = s
            return np.exp(log_p(x)[0]) * s ** (dim - 1)

        sphere = 2 * np.pi ** (dim / 2) / special.gamma(dim / 2)
        mass = sphere * integrate.quad(radial, 0, radius)[0] if dim > 1 else 2 * integrate.quad(radial, 0, radius)[0]
        assert mass == pytest.approx(1.0, rel=1e-8)
        assert np.isneginf(log_p(np.full((1, dim), 1.001 * radius)))


def test_restrict_to_ball_keeps_inside_rows():
    rng = np.random.default_rng(9)
    X = rng.standard_normal((1000, 3))
    y = X[:, 0]
    Xr, yr = restrict_to_ball(X, y, 1.5)
    assert np.all(np.linalg.norm(Xr, axis=1) <= 1.5) and len(Xr) == np.sum(np.linalg.norm(X, axis=1) <= 1.5)
    np.testing.assert_array_equal(yr, Xr[:, 0])


def _good():
    rng = np.random.default_rng(10)
    X = _uniform_ball(50, 2, 1.0, rng)
    return X, np.tanh(X[:, 0]), np.eye(2)[:, :1], uniform_ball_log_density(1.0)


@pytest.mark.parametrize(("change", "match"), [
    (lambda X, y, A, p: (X, y, 2 * A, p), "unit-norm"),
    (lambda X, y, A, p: (X, y, A[:1], p), "shape"),
    (lambda X, y, A, p: (X[:, 0], y, A, p), "2-D"),
    (lambda X, y, A, p: (X, y[:-1], A, p), "entries"),
    (lambda X, y, A, p: (np.where(np.arange(50)[:, None] == 3, np.nan, X), y, A, p), "NaN"),
    (lambda X, y, A, p: (X, np.where(np.arange(50) == 7, np.nan, y), A, p), "NaN"),
    (lambda X, y, A, p: (X, y, np.full_like(A, np.nan), p), "NaN"),
    (lambda X, y, A, p: (2 * X, y, A, p), "support"),
    (lambda X, y, A, p: (X, y, A, lambda Z: p(Z)[:-1]), "one value per row"),
    (lambda X, y, A, p: (X, y, A, lambda Z: np.full(len(Z), np.nan)), "NaN"),
    (lambda X, y, A, p: (X[:1], y[:1], A, p), "at least 2"),
])
def test_bad_inputs_raise_value_error(change, match):
    X, y, A, p = change(*_good())
    with pytest.raises(ValueError, match=match):
        fourier_bias(X, y, A, p, "tanh", log_density=True)


@pytest.mark.parametrize("kw", [dict(epsilon=0.0), dict(epsilon=2.0), dict(n_frequencies=0),
                                dict(n_frequencies=1.5), dict(frequency_radius=-1.0),
                                dict(coef_sign=[0.5]), dict(coef_sign=[1.0, -1.0])])
def test_bad_parameters_raise_value_error(kw):
    X, y, A, p = _good()
    with pytest.raises(ValueError):
        fourier_bias(X, y, A, p, "tanh", log_density=True, **kw)
