"""steepest-margin: the theorem's capped steps, the proof's rate check (K_t bounded, ||w|| ~ ln(t)/γ) and its
verdict, which must fail on a stalled gap, a norm growing faster than ln t, or a gap still too large."""

import math

import numpy as np

from nnlift.bias.margin import gaussian_data, steepest_margin_trajectory
from nnlift.reproduce.steepest_margin import MAX_FINAL_GAP, proof_rate, rate_agrees, report, run

T = 50_000
RECORDS = np.unique(np.geomspace(1, T, 60).round().astype(int)).astype(float)
GAMMA = 1.3


def _trajectory(w_norm, k):
    """ln L and the relative gap that a run with own norm `w_norm` and K_t = `k` would record (gap = K/(γ||w||),
    the bound met with equality: one active support vector)."""
    return k - GAMMA * w_norm, k / (GAMMA * w_norm)


def test_the_rate_check_accepts_the_proofs_rate_and_rejects_a_stall_a_fast_norm_or_a_large_gap():
    w_norm = np.log(RECORDS) / GAMMA + 25.0
    log_loss, gap = _trajectory(w_norm, 1.4 + 0.1 / w_norm)  # K_t bounded, ||w|| ~ ln(t)/γ: Thm. 5's regime
    rate = proof_rate(RECORDS, w_norm, log_loss, GAMMA, T)
    assert math.isclose(rate["norm_growth"], 1.0, rel_tol=1e-9) and rate["bound_slope"] < -0.9
    assert math.isclose(rate["relative_bound_T"], gap[-1], rel_tol=1e-12) and rate_agrees(rate, gap[-1])

    log_loss, gap = _trajectory(w_norm, 0.03 * GAMMA * w_norm + 0.05)  # the gap stalls near 3%, below 5%
    rate = proof_rate(RECORDS, w_norm, log_loss, GAMMA, T)
    assert gap[-1] < MAX_FINAL_GAP and rate["bound_slope"] > -0.1 and not rate_agrees(rate, gap[-1])

    fast = np.sqrt(RECORDS) / GAMMA + 25.0  # steps outside the cap: ||w|| grows like a power of t
    log_loss, gap = _trajectory(fast, np.full_like(fast, 1.4))
    rate = proof_rate(RECORDS, fast, log_loss, GAMMA, T)
    assert rate["norm_growth"] > 10 and not rate_agrees(rate, gap[-1])

    log_loss, gap = _trajectory(w_norm, np.full_like(w_norm, 3.0))  # the right rate, but still 20% from the limit
    assert gap[-1] > MAX_FINAL_GAP and not rate_agrees(proof_rate(RECORDS, w_norm, log_loss, GAMMA, T), gap[-1])


def test_the_proofs_bound_holds_on_a_real_run():
    X, y = gaussian_data(6, 10, 0)
    trajectory = steepest_margin_trajectory(X, y, "l1", n_steps=2000, max_step=1e4)
    gamma = trajectory.reference.margin
    w_norm = np.abs(trajectory.w).sum(axis=1)
    k = gamma * w_norm + trajectory.log_loss
    assert np.all(k >= -1e-12)  # ln L >= −min margin >= −γ||w||
    assert np.all(trajectory.margin_gap <= k / w_norm + 1e-12)  # γ − margin(w) <= K/||w||


def test_a_cap_that_always_binds_is_constant_step_descent():
    X, y = gaussian_data(6, 10, 0)
    capped = steepest_margin_trajectory(X, y, "l1", n_steps=200, max_step=1e-3)  # 1/(B² L) > 1e-3 from the start
    constant = steepest_margin_trajectory(X, y, "l1", normalized=False, lr=1e-3, n_steps=200)
    np.testing.assert_allclose(capped.w, constant.w, rtol=1e-12, atol=1e-15)
    uncapped = steepest_margin_trajectory(X, y, "l1", n_steps=200)
    assert uncapped.margin_gap[-1] < capped.margin_gap[-1]


def test_fast_run_reports_both_step_rules():
    result = run(fast=True)
    assert result["max_step"] > 0 and len(result["runs"]) == 5
    for one in result["runs"]:
        assert one["max_step"] == result["max_step"] and one["uncapped"]["max_step"] is None
        assert set(one["agrees"]) == {"margin", "direction"}
        own = one["own_reference"]
        assert 0.9 < one["margin_ratio"][own] <= 1 + 1e-9  # no run beats its own norm's max margin
        assert one["relative_margin_gap"][-1] <= one["rate"]["relative_bound_T"] + 1e-12
    text = report(result)
    assert "K_t" in text and "uncapped" in text
