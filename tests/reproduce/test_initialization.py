"""Initialisation and dynamical isometry (Saxe et al. 2014; Pennington et al. 2017): the Jacobian spectrum at the
start against exact arithmetic, autodiff and random-matrix theory, the learning-time routine against the closed form
of gradient descent on a quadratic, and verdicts that turn when the numbers contradict the claims."""

import copy
import json
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from nnlift.reproduce import initialization
from nnlift.reproduce.initialization import (
    InitializationConfig,
    gaussian_log_det_moments,
    gaussian_log_gain_moments,
    jacobian_factors,
    log_singular_values,
    pretrain,
    verdicts,
)


@pytest.fixture(scope="module")
def result():
    return initialization.run(fast=True)


def _gaussian_factors(n, depth, batch, seed):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, n, n, generator=generator, dtype=torch.float64) / math.sqrt(n) for _ in range(depth)]


def test_log_singular_values_match_exact_arithmetic_over_a_wide_range():
    """At depth 24 the spectrum spans ~40 nats: the explicit float64 product loses the small σ, the QR product not."""
    mpmath = pytest.importorskip("mpmath")
    factors = _gaussian_factors(6, 24, 1, seed=3)
    mpmath.mp.dps = 60
    product = mpmath.eye(6)
    for F in factors:
        product = mpmath.matrix(F[0].tolist()) * product
    exact = sorted((float(mpmath.log(s)) for s in mpmath.svd_r(product, compute_uv=False)), reverse=True)
    measured = log_singular_values(factors)[0].numpy()
    assert exact[0] - exact[-1] > 30
    np.testing.assert_allclose(measured, exact, rtol=0, atol=1e-9)


def test_log_singular_values_match_the_svd_of_a_short_product():
    factors = _gaussian_factors(8, 3, 4, seed=1)
    product = factors[2] @ factors[1] @ factors[0]
    torch.testing.assert_close(log_singular_values(factors), torch.log(torch.linalg.svdvals(product)))


def test_tanh_jacobian_factors_match_autodiff():
    n, depth = 5, 4
    generator = torch.Generator().manual_seed(2)
    weights = [torch.randn(2, n, n, generator=generator, dtype=torch.float64) / math.sqrt(n) for _ in range(depth)]
    inputs = torch.randn(3, n, generator=generator, dtype=torch.float64)
    factors = jacobian_factors(weights, "tanh", inputs)
    product = factors[0]
    for F in factors[1:]:
        product = F @ product
    for b in range(2):
        def f(x, b=b):
            h = x
            for W in weights[:-1]:
                h = torch.tanh(W[b] @ h)
            return weights[-1][b] @ h
        for k in range(3):
            torch.testing.assert_close(product[b * 3 + k], torch.func.jacrev(f)(inputs[k]))


def test_log_gain_moments_are_those_of_a_chi_square():
    """Depth 1: log ‖W v‖ = ½ log(χ²_n / n); mean and variance by quadrature of the χ² density."""
    n = 7
    mean, var = gaussian_log_gain_moments(1, n)

    def moment(p):
        return integrate.quad(lambda x: (0.5 * math.log(x / n)) ** p * stats.chi2.pdf(x, n), 0, np.inf)[0]

    assert mean == pytest.approx(moment(1), rel=1e-8)
    assert var == pytest.approx(moment(2) - moment(1) ** 2, rel=1e-7)
    assert gaussian_log_gain_moments(5, n) == pytest.approx((5 * mean, 5 * var), rel=1e-12)


def test_log_det_moments_match_monte_carlo():
    n, depth, samples = 4, 3, 20_000
    rng = np.random.default_rng(0)
    W = rng.standard_normal((samples, depth, n, n)) / math.sqrt(n)
    per_sample = np.linalg.slogdet(W)[1].sum(axis=1) / n
    mean, var = gaussian_log_det_moments(depth, n)
    assert abs(per_sample.mean() - mean) < 4 * math.sqrt(var / samples)
    assert per_sample.var() == pytest.approx(var, rel=0.05)


def test_spectra_at_the_start(result):
    summary = result["summary"]
    assert summary["orthogonal_linear_max_abs_sigma_minus_1"] < 1e-12
    for row in result["random_matrix"]:
        assert row["log_gain_var"] == pytest.approx(row["log_gain_var_exact"], rel=0.2)
        assert abs(row["mean_log_sigma_z"]) < 4
    tanh = {r["init"]: r for r in result["runs"] if r["net"] == "tanh" and r["depth"] == 32}
    assert tanh["orthogonal"]["spread"] < 0.25 * tanh["gaussian"]["spread"]
    assert all(result["agrees"][key] for key in ("orthogonal_linear_isometry", "gaussian_linear_random_matrix_theory",
                                                  "tanh_orthogonal_concentrates"))


def test_pretraining_converges_to_nearly_orthogonal_layers_and_a_stub_does_not():
    config = InitializationConfig.fast()
    task = initialization._task(config, np.random.default_rng(0))
    spreads = {}
    for steps in (config.pretrain_iter, 1):
        config.pretrain_iter = steps
        weights = pretrain("linear", task["X"], 8, 2, config, torch.Generator().manual_seed(0))
        spreads[steps] = float(log_singular_values(weights).std(dim=1).mean())
        if steps > 1:
            for W in weights:
                eye = torch.eye(config.width, dtype=torch.float64).expand_as(W)
                assert torch.linalg.matrix_norm(W.mT @ W - eye, ord=2).max() < 0.05
    assert spreads[1] > 10 * spreads[InitializationConfig.fast().pretrain_iter]


def test_learning_time_matches_gradient_descent_on_a_quadratic():
    """Depth 1 from W = 0: E_t = −M (I − lr C)^t, so the loss ½ Σ_i λ_i ‖M p_i‖² (1 − lr λ_i)^{2t} is known."""
    config = InitializationConfig.fast()
    config.etas, config.criterion, config.max_iter = [0.5], 0.05, 2000
    task = initialization._task(config, np.random.default_rng(1))
    lam, P = np.linalg.eigh(task["C"].numpy())
    weight = lam * np.sum((task["M"].numpy() @ P) ** 2, axis=0)
    lr = config.etas[0] / config.input_eigenvalues[0]
    t = np.arange(config.max_iter)
    closed = 0.5 * (weight[None] * (1 - lr * lam[None]) ** (2 * t[:, None])).sum(axis=1)
    expected = int(np.argmax(closed <= config.criterion * task["zero_loss"]))
    start = [torch.zeros(3, config.width, config.width, dtype=torch.float64)]
    measured = initialization._learning_time(start, initialization._loss_function("linear", task), task, 1, config)
    assert measured == {"iterations": expected, "censored": False, "best_eta": 0.5,
                        "initial_loss_over_zero_loss": pytest.approx(1.0)}


def test_learning_times(result):
    times = {(r["net"], r["init"], r["depth"]): r["iterations"] for r in result["runs"]}
    assert times["linear", "gaussian", 32] > 3 * times["linear", "orthogonal", 32]
    assert times["tanh", "gaussian", 32] > 3 * times["tanh", "orthogonal", 32]
    assert times["linear", "pretrained", 32] < 2 * times["linear", "pretrained", 8]
    assert result["agrees"]["linear_gaussian_slows_with_depth"]


@pytest.mark.parametrize("key, change", [
    ("orthogonal_linear_isometry", {"orthogonal_linear_max_abs_sigma_minus_1": 1e-3}),
    ("gaussian_linear_spread_grows", {"gaussian_linear_spreads": [3.0, 3.5]}),
    ("gaussian_linear_random_matrix_theory", {"log_gain_var_ratios": [1.0, 2.0]}),
    ("gaussian_linear_random_matrix_theory", {"mean_log_sigma_z": [0.1, -6.0]}),
    ("linear_orthogonal_depth_independent", {"linear_orthogonal_plateau": 3.0}),
    ("linear_gaussian_slows_with_depth", {"linear_gaussian_growth": 1.2}),
    ("linear_pretrained_depth_independent", {"linear_pretrained_censored_at_max_depth": True}),
    ("linear_pretrained_near_isometric", {"linear_pretrained_spreads": [5.0, 9.0]}),
    ("tanh_orthogonal_concentrates", {"tanh_orthogonal_spreads": [2.5, 8.0]}),
    ("tanh_orthogonal_learns_faster", {"tanh_orthogonal_time_at_max_depth": 300.0}),
    # a pooled correlation carried by depth alone is not enough: it must hold within the depths
    ("faster_when_better_conditioned", {"spearman_spread_time": 0.9, "spearman_spread_time_by_depth": [0.2, -0.1]}),
])
def test_verdicts_turn_when_the_numbers_contradict_the_claim(result, key, change):
    summary = copy.deepcopy(result["summary"])
    assert verdicts(summary) == result["agrees"]
    summary.update(change)
    assert not verdicts(summary)[key]


def test_save_and_report(result, tmp_path):
    paths = initialization.save(result, tmp_path)
    assert sorted(p.name for p in paths) == ["initialization.json", "initialization.png"]
    stored = json.loads((tmp_path / "initialization.json").read_text(), parse_constant=pytest.fail)
    assert stored["agrees"] == result["agrees"] and stored["wall_time_s"] > 0
    assert (tmp_path / "initialization.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = initialization.report(result)
    assert "Saxe" in text and "Pennington" in text and "| claim | measured | verdict |" in text
    assert text.count("agree") >= len(result["agrees"])
