"""NN-LIFT on a non-realisable ridge target beside Barron's C_f²/k (Janzamin, Sedghi & Anandkumar 2015, Sec. 3.2):
the target's closed forms, the oracle, the verdicts on contradicting numbers, the fast run."""

import json
import math

import numpy as np
import pytest
from scipy.special import expit

from nnlift.reproduce import barron
from nnlift.reproduce.barron import BarronConfig, RidgeTarget, one_sigmoid_error, oracle_risk, verdicts


@pytest.fixture(scope="module")
def result():
    return barron.run(fast=True)


def test_barron_constant_is_the_fourier_mass_times_frequency():
    """C_f = s Σ|a_j| against ∫‖ω‖|F(dω)| from the 2-D FFT of f on a period box (the frequencies ±(3, 4)/5 and
    ±(−4, 3)/5 lie on the lattice 2π/L ℤ² for L = 10π, so the DFT is exact)."""
    target = RidgeTarget(np.array([[0.6, -0.8], [0.8, 0.6]]), np.array([1.0, -0.5]), 1.0, 0.7)
    N, L = 64, 10 * math.pi
    grid = np.arange(N) * L / N
    X = np.stack(np.meshgrid(grid, grid, indexing="ij"), axis=-1).reshape(-1, 2)
    coefficients = np.fft.fft2(target(X).reshape(N, N)) / N ** 2
    omega = 2 * math.pi * np.fft.fftfreq(N, d=L / N)
    norms = np.hypot(*np.meshgrid(omega, omega, indexing="ij"))
    assert np.sum(norms * np.abs(coefficients)) == pytest.approx(target.barron_constant(), rel=1e-9)
    assert target.barron_constant() == pytest.approx(1.5)


def test_variance_and_stein_tensor_weights_by_monte_carlo():
    """Var f in closed form vs a sample; λ_j = E[f(x) He₃(u_jᵀx)] (the moment E[f S_3] along u_j, Stein's lemma);
    Var f ≤ C_f² (|f(x) − f(0)| ≤ C_f-weighted |ωᵀx|, E(ω̂ᵀx)² = 1)."""
    target = RidgeTarget.draw(5, 1.0, math.pi / 4, random_state=3)
    X = np.random.default_rng(0).standard_normal((400_000, 5))
    f = target(X)
    assert np.var(f) == pytest.approx(target.variance(), rel=0.02)
    t = X @ target.directions
    moments = (f[:, None] * (t ** 3 - 3 * t)).mean(axis=0)
    np.testing.assert_allclose(moments, target.tensor_weights(), atol=0.03)
    assert target.variance() <= target.barron_constant() ** 2
    np.testing.assert_allclose(target.directions.T @ target.directions, np.eye(5), atol=1e-12)


def test_one_sigmoid_error_against_a_brute_force_grid():
    """The quadrature optimum vs the best of a (α, β) grid with (c, c₀) by least squares on N(0, 1) samples."""
    quadrature = one_sigmoid_error(1.0, math.pi / 4)
    t = np.random.default_rng(1).standard_normal(20_000)
    g = np.cos(t + math.pi / 4)
    best = np.inf
    for alpha in np.linspace(-8, 8, 49):
        for beta in np.linspace(-6, 6, 37):
            H = np.column_stack([expit(alpha * t + beta), np.ones_like(t)])
            best = min(best, np.mean((g - H @ np.linalg.lstsq(H, g, rcond=None)[0]) ** 2))
    assert 0 < quadrature < np.var(g)
    assert quadrature == pytest.approx(best, rel=0.08)


def test_oracle_risk_limits():
    target = RidgeTarget.draw(6, 1.0, 0.5, random_state=0)
    e = one_sigmoid_error(1.0, 0.5)
    assert oracle_risk(target, 0, e) == pytest.approx(target.variance())
    assert oracle_risk(target, 6, e) == pytest.approx(e * np.sum(target.amplitudes ** 2))
    risks = [oracle_risk(target, k, e) for k in range(7)]
    assert np.all(np.diff(risks) < 0)


def test_verdicts_agree_with_the_bound_shape_and_not_with_contradicting_numbers():
    config = BarronConfig()
    ks, ns = [1, 2, 4, 8], [1_000, 10_000, 100_000]
    consistent = [[0.05 / k + 20.0 / n for k in ks] for n in ns]
    assert all(verdicts(ks, ns, consistent, 2.0, config)["agrees"].values())
    flat = [[0.1 for _ in ks] for _ in ns]
    assert not any(verdicts(ks, ns, flat, 2.0, config)["agrees"].values())
    rising_in_n = [[0.05 / k + n / 1e6 for k in ks] for n in ns]
    assert not verdicts(ks, ns, rising_in_n, 2.0, config)["agrees"]["falls_with_n_to_floor"]
    rising_in_k = [[0.01 * k + 20.0 / n for k in ks] for n in ns]
    out = verdicts(ks, ns, rising_in_k, 2.0, config)["agrees"]
    assert not out["decreases_with_k"] and not out["within_bound_shape"]


def test_fast_run_is_sane_and_matches_the_oracle(result):
    config = BarronConfig.fast()
    variance = result["target"]["test_variance"]
    assert result["target"]["variance"] == pytest.approx(variance, rel=0.1)
    assert len(result["runs"]) == config.seeds * len(config.ns) * len(config.ks)
    for row in result["per_k"]:
        assert max(row["lift"] + row["backprop"] + [row["lift_finetune"]]) <= variance
        assert row["best_width_k"] <= min(row["backprop"][-1], row["lift_finetune"])
        assert row["alignment"] > 0.95  # the tensor step finds the ridge directions
        assert row["lift"][-1] == pytest.approx(row["oracle"], rel=0.25)
    s = result["summary"]
    risk = np.array([[row["lift"][i] for row in result["per_k"]] for i in range(len(config.ns))])
    np.testing.assert_allclose(np.array(s["ratio"]), risk / np.array(s["fitted"]))
    assert set(result["agrees"]) == {"decreases_with_k", "falls_with_n_to_floor", "within_bound_shape"}
    assert all(isinstance(v, bool) for v in result["agrees"].values())
    assert result["wall_time_s"] > 0


def test_save_and_report(result, tmp_path):
    paths = barron.save(result, tmp_path)
    assert sorted(p.name for p in paths) == ["barron.json", "barron.png"]
    stored = json.loads((tmp_path / "barron.json").read_text(), parse_constant=pytest.fail)
    assert stored["per_k"][0]["lift"] == result["per_k"][0]["lift"]
    assert (tmp_path / "barron.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = barron.report(result)
    assert "Janzamin" in text and "| paper's claim | measured | verdict |" in text
