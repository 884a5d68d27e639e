"""Deep linear networks (Saxe et al. 2014): the measured mode strengths against the closed form, and the
learning time vs depth for orthogonal and scaled Gaussian starts."""

import json

import numpy as np
import pytest

from nnlift.reproduce import deep_linear
from nnlift.reproduce.deep_linear import DeepLinearConfig, closed_form_strength


@pytest.fixture(scope="module")
def result():
    return deep_linear.run(fast=True)


def test_closed_form_starts_at_u0_and_saturates_at_s():
    t = np.array([0.0, 1e4])
    u = closed_form_strength(t, s=2.0, u0=1e-3, tau=100.0)
    assert u[0] == pytest.approx(1e-3, rel=1e-12) and u[1] == pytest.approx(2.0, rel=1e-12)


def test_closed_form_time_inverts_the_trajectory():
    s, u0, tau = 1.5, 1e-3, 50.0
    for u in (0.01, 0.75, 1.4):
        assert closed_form_strength(deep_linear._closed_form_time(u, s, u0, tau), s, u0, tau) == pytest.approx(u)


def test_decoupled_modes_follow_the_closed_form(result):
    modes = result["modes"]["decoupled"]["modes"]
    assert [m["s"] for m in modes] == DeepLinearConfig.fast().singular_values
    for mode in modes:
        assert mode["measured_u0"] == pytest.approx(1e-3, rel=1e-9)
        assert mode["max_abs_error_over_s"] < 0.01
        assert mode["half_time"] == pytest.approx(mode["predicted_half_time"], rel=0.01)
        assert mode["final_strength_over_s"] > 0.99
    # learning time ∝ 1/s: s·t_half/τ = ½ ln((s − u0)/u0) grows only logarithmically in s
    halves = [m["half_time"] * m["s"] for m in modes]
    assert max(halves) / min(halves) < 1.3


def test_a_larger_learning_rate_departs_from_the_continuous_time_solution():
    """The discrepancy is the discretisation error O(λs): ten times the step, several times the error."""
    small = DeepLinearConfig.fast()
    large = DeepLinearConfig.fast()
    large.lr = 10 * small.lr
    errors = [max(m["max_abs_error_over_s"]
                  for m in deep_linear._mode_trajectories(c, "decoupled", np.random.default_rng(0))["modes"])
              for c in (small, large)]
    assert errors[1] > 3 * errors[0]


def test_random_small_start_follows_the_sigmoid_with_a_fitted_u0(result):
    modes = result["modes"]["random"]["modes"]
    assert all(m["half_time"] is not None for m in modes)
    assert result["summary"]["random_max_error_over_s"] < 0.05


def test_gaussian_start_learns_slower_than_orthogonal_at_depth(result):
    orthogonal, gaussian = result["depth"]["orthogonal"], result["depth"]["gaussian"]
    assert [r["depth"] for r in orthogonal] == [4, 16]
    assert not orthogonal[-1]["censored"]
    assert gaussian[-1]["iterations"] > 3 * orthogonal[-1]["iterations"]


def test_save_and_report(result, tmp_path):
    paths = deep_linear.save(result, tmp_path)
    assert sorted(p.name for p in paths) == ["deep_linear.json", "deep_linear.png"]
    stored = json.loads((tmp_path / "deep_linear.json").read_text(), parse_constant=pytest.fail)
    assert stored["summary"]["orthogonal_growth"] == result["summary"]["orthogonal_growth"]
    assert (tmp_path / "deep_linear.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = deep_linear.report(result)
    assert "Saxe" in text and "| claim | measured | verdict |" in text
    assert text.count("agree") >= 4
