"""Power-map fixed points (Anandkumar et al. 2014, §4.1): the Jacobian against finite differences, the closed-form
fixed points, the root finder against a polynomial's roots, whitening, and verdicts that can say "does not agree"."""

import copy
import json

import numpy as np
import pytest

from nnlift.reproduce import power_landscape as pl
from nnlift.tensor._multilinear import cp_to_tensor


@pytest.fixture(scope="module")
def result():
    return pl.run(fast=True)


def _tiny_config():
    return pl.PowerLandscapeConfig(orthogonal_dims=[3], dim=4, correlations=[0.3], seeds=1, power_starts=200,
                                   root_starts_per_bound=5)


def _correlated_tensor(d=4, rho=0.3, ratio=10.0, seed=0):
    weights, factors = pl.correlated_factors(d, rho, ratio, np.random.default_rng(seed))
    return weights, factors, cp_to_tensor(weights, factors, 3)


def test_correlated_factors_have_the_requested_cosines():
    _, factors, _ = _correlated_tensor(d=5, rho=0.4)
    gram = factors.T @ factors
    np.testing.assert_allclose(gram, 0.6 * np.eye(5) + 0.4, atol=1e-12)


def test_tangent_jacobian_matches_finite_differences():
    """At a stable and at an unstable fixed point of a non-orthogonal tensor: central differences of the power map
    along an orthonormal tangent basis P equal J P, and P^T J P is what tangent_jacobian returns."""
    import scipy.linalg

    _, _, T = _correlated_tensor(rho=0.1, ratio=3.0)
    found = pl.roots(T, 200, np.random.default_rng(1))
    radii = np.array([pl.spectral_radius(T, u) for u in found.T])
    assert radii.min() < 1 < radii.max()
    h = 1e-6
    for u in (found[:, radii.argmin()], found[:, radii.argmax()]):
        np.testing.assert_allclose(pl.power_map(T, u[:, None])[:, 0], u, atol=1e-10)
        P = scipy.linalg.null_space(u[None, :])
        differences = (pl.power_map(T, u[:, None] + h * P) - pl.power_map(T, u[:, None] - h * P)) / (2 * h)
        np.testing.assert_allclose(u @ differences, 0, atol=1e-6)
        np.testing.assert_allclose(P.T @ differences, pl.tangent_jacobian(T, u), atol=1e-6)


def test_closed_form_points_are_fixed_with_the_predicted_eigenvalue_and_stability():
    weights, factors = pl.orthogonal_factors(4, np.random.default_rng(2))
    T = cp_to_tensor(weights, factors, 3)
    closed = pl.closed_form_fixed_points(weights, factors)
    assert closed["points"].shape == (4, 15) and sorted(np.bincount(closed["sizes"])[1:]) == [1, 4, 4, 6]
    np.testing.assert_allclose(pl.power_map(T, closed["points"]), closed["points"], atol=1e-12)
    np.testing.assert_allclose(np.einsum("ijk,i,j,k->", T, *[closed["points"][:, 0]] * 3),
                               closed["eigenvalues"][0], rtol=1e-12)
    mu = np.einsum("ijk,il,jl,kl->l", T, *[closed["points"]] * 3)
    np.testing.assert_allclose(mu, closed["eigenvalues"], rtol=1e-12)
    radii = [pl.spectral_radius(T, u) for u in closed["points"].T]
    np.testing.assert_allclose(radii, closed["radii"], atol=1e-10)


@pytest.mark.parametrize(("cosine", "weight", "n_real"), [(0.2, 1.0, 3), (0.3, 3.0, 1)])
def test_root_finder_agrees_with_the_roots_of_the_binary_cubic(cosine, weight, n_real):
    """d = 2, u = (1, x)/‖·‖: T(I,u,u) ∥ u iff −T122 x³ + (T222 − 2T112) x² + (2T212 − T111) x + T211 = 0, so the
    real roots of that cubic (numpy.roots) are every fixed point: three, or one when the weights are unequal."""
    factors = np.array([[1.0, cosine], [0.0, np.sqrt(1 - cosine ** 2)]])
    T = cp_to_tensor(np.array([1.0, weight]), factors, 3)
    coefficients = [-T[0, 1, 1], T[1, 1, 1] - 2 * T[0, 0, 1], 2 * T[1, 0, 1] - T[0, 0, 0], T[1, 0, 0]]
    x = np.roots(coefficients)
    x = x[np.abs(x.imag) < 1e-9].real
    expected = np.vstack([np.ones_like(x), x]) / np.sqrt(1 + x ** 2)
    expected = expected * np.sign(np.einsum("ijk,il,jl,kl->l", T, expected, expected, expected))
    found = pl.roots(T, 100, np.random.default_rng(3))
    assert found.shape[1] == len(x) == n_real
    distances = np.linalg.norm(found[:, :, None] - expected[:, None, :], axis=0)
    assert np.all(distances.min(axis=1) < 1e-9) and np.all(distances.min(axis=0) < 1e-9)


def test_whitened_tensor_is_the_orthogonal_closed_form():
    weights, factors, T = _correlated_tensor(rho=0.5)
    T_w, weights_w, factors_w, unwhiten = pl._whitened(weights, factors)
    np.testing.assert_allclose(factors_w.T @ factors_w, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(T_w, cp_to_tensor(weights_w, factors_w, 3), atol=1e-12)
    np.testing.assert_allclose(unwhiten @ factors_w, factors * np.sqrt(weights), atol=1e-12)


def test_fast_run_counts(result):
    assert all(result["agrees"].values())
    for case in result["orthogonal"]:
        k = case["k"]
        assert case["fixed_points_found"] == case["closed_form_found"] == 2 ** k - 1
        assert case["attractors"] == case["stable_found"] == k and case["unstable_found"] == 2 ** k - 1 - k
        assert sum(case["basin_fractions"]) == pytest.approx(1.0)
        assert max(case["attractor_radii"]) < 1e-10  # components attract quadratically
    for row in result["correlated"]:
        assert row["raw"]["fixed_points_found"] <= 2 ** row["raw"]["dim"] - 1  # Cartwright & Sturmfels (2013)
        assert row["whitened"]["found_not_in_closed_form"] == 0
        assert row["whitened"]["closed_form_found"] >= 0.9 * (2 ** row["whitened"]["dim"] - 1)
        assert row["raw"]["attractors_not_components"] == row["raw"]["attractors"]  # a_i are not fixed points
    strong = [row for row in result["correlated"] if row["rho"] == 0.3]
    assert all(row["raw"]["spurious_attractors"] == 1 and row["raw"]["fraction_starts_spurious"] == 1
               for row in strong)


def test_orthogonal_components_give_no_spurious_attractors():
    """ρ = 0 makes the 'correlated' components orthonormal: the spurious-attractor verdict must not agree."""
    config = _tiny_config()
    case = pl._correlated_case(0.0, 10.0, 0, config, np.random.default_rng(4))
    assert case["raw"]["spurious_attractors"] == 0 and case["raw"]["components_attracting"] == config.dim
    assert not pl.verdicts([], [case])["correlated_has_spurious_attractors"]


def test_orthogonal_verdicts_fail_on_a_non_orthogonal_tensor():
    """The closed form assumed for correlated components is wrong, and the verdicts must say so."""
    config = _tiny_config()
    weights, factors, T = _correlated_tensor(rho=0.3)
    case = pl.analyse(T, factors, config, np.random.default_rng(5), pl.closed_form_fixed_points(weights, factors))
    case["k"] = 4
    agrees = pl.verdicts([case], [])
    assert not agrees["orthogonal_attractors_are_components"]
    assert not agrees["orthogonal_fixed_points_match_closed_form"]


def test_verdicts_follow_the_numbers(result):
    assert not pl.verdicts([], [])["orthogonal_attractors_are_components"]
    broken = copy.deepcopy(result)
    broken["orthogonal"][0]["closed_form_found"] -= 1
    broken["correlated"][0]["whitened"]["orthogonality_error"] = 1e-3
    for row in broken["correlated"]:
        row["raw"]["spurious_attractors"] = 0
    agrees = pl.verdicts(broken["orthogonal"], broken["correlated"])
    assert agrees["orthogonal_attractors_are_components"]
    assert not agrees["orthogonal_fixed_points_match_closed_form"]
    assert not agrees["correlated_has_spurious_attractors"]
    assert not agrees["whitened_attractors_are_components"]


def test_save_and_report(result, tmp_path):
    paths = pl.save(result, tmp_path)
    assert sorted(p.name for p in paths) == ["power_landscape.json", "power_landscape.png"]
    stored = json.loads((tmp_path / "power_landscape.json").read_text(), parse_constant=pytest.fail)
    assert stored["agrees"] == result["agrees"]
    assert (tmp_path / "power_landscape.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = pl.report(result)
    assert "Anandkumar" in text and "| paper's claim | measured | verdict |" in text
    assert text.count("| agrees |") == len(result["agrees"])
