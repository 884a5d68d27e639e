"""Where backprop gets stuck: Auer et al.'s single neuron with 2^d minima, Safran & Shamir's spurious ReLU minima."""

import copy
import json
import math

import numpy as np
import pytest
import torch

from nnlift.reproduce import backprop_failure
from nnlift.reproduce.backprop_failure import (
    BackpropFailureConfig,
    classify_end_points,
    neuron_critical_points,
    neuron_data,
    neuron_gradient,
    neuron_hessian,
    neuron_loss,
    population_gradient,
    population_hessian,
    population_loss,
    relu_pair_expectation,
    verdicts,
)


@pytest.fixture(scope="module")
def result():
    return backprop_failure.run(fast=True)


def _random_student(n: int, k: int, seed: int) -> torch.Tensor:
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) / math.sqrt(k)


# ------------------------------------------------------------------------------------ part 2: the closed form

def test_population_loss_matches_monte_carlo():
    n, k, rows = 5, 4, 1_000_000
    W, V = _random_student(n, k, 0), torch.eye(k, dtype=torch.float64)
    X = torch.randn(rows, k, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    half_squares = 0.5 * (torch.relu(X @ W.T).sum(dim=1) - torch.relu(X @ V.T).sum(dim=1)) ** 2
    standard_error = float(half_squares.std() / math.sqrt(rows))
    assert abs(float(population_loss(W, V)) - float(half_squares.mean())) <= 4 * standard_error
    products = torch.relu(X @ W[0]) * torch.relu(X @ W[1])
    assert abs(float(relu_pair_expectation(W[:1], W[1:2])) - float(products.mean())) \
        <= 4 * float(products.std() / math.sqrt(rows))


def test_pair_expectation_special_angles():
    u, v = torch.tensor([[2.0, 0.0]], dtype=torch.float64), torch.tensor([[0.0, 3.0]], dtype=torch.float64)
    assert float(relu_pair_expectation(u, u)) == pytest.approx(2.0)  # |u|²/2
    assert float(relu_pair_expectation(u, v)) == pytest.approx(6 / (2 * math.pi))  # θ = π/2
    assert float(relu_pair_expectation(u, -u)) == pytest.approx(0.0, abs=1e-12)  # θ = π: disjoint supports
    V = torch.eye(4, dtype=torch.float64)
    assert float(population_loss(V, V)) == pytest.approx(0.0, abs=1e-12)  # the teacher is a global minimum
    assert float(population_loss(torch.full((1, 4), 1e-100, dtype=torch.float64), V)) == pytest.approx(
        0.5 * (4 * 3 / (2 * math.pi) + 4 / 2))  # L(0) = ½ E[(Σ relu(x_j))²]


def test_gradient_matches_finite_differences():
    W, V = _random_student(5, 4, 2), torch.eye(4, dtype=torch.float64)
    gradient, h = population_gradient(W, V), 1e-6
    for i in range(5):
        for j in range(4):
            E = torch.zeros_like(W)
            E[i, j] = h
            numeric = (population_loss(W + E, V) - population_loss(W - E, V)) / (2 * h)
            assert float(numeric) == pytest.approx(float(gradient[i, j]), abs=1e-8)
    batch = torch.stack([W, 2 * W])
    assert torch.allclose(population_gradient(batch, V)[1], population_gradient(2 * W, V))


def test_hessian_matches_finite_differences_of_the_gradient():
    W, V = _random_student(4, 3, 3), torch.eye(3, dtype=torch.float64)
    H, h = population_hessian(W, V), 1e-6
    numeric = torch.stack([(population_gradient(W + h * e.reshape(4, 3), V)
                            - population_gradient(W - h * e.reshape(4, 3), V)).reshape(-1) / (2 * h)
                           for e in torch.eye(12, dtype=torch.float64)], dim=1)
    assert torch.allclose(H, numeric, atol=1e-7)
    autograd = torch.func.jacfwd(lambda w: population_gradient(w.reshape(4, 3), V).reshape(-1))(W.reshape(-1))
    assert torch.allclose(H, autograd, atol=1e-12)
    assert torch.allclose(population_hessian(torch.stack([W, 2 * W]), V)[1], population_hessian(2 * W, V))


# ------------------------------------------------------------------------------ part 2: the measured rows

def test_rows_add_up_and_rates_are_counts(result):
    config = BackpropFailureConfig.fast()
    assert [r["k"] for r in result["exact"]] == config.ks
    over = [(k, k + extra) for k in config.over_ks for extra in config.extra_units]
    assert [(r["k"], r["n"]) for r in result["over"]] == over
    for row in result["exact"] + result["over"]:
        parts = row["n_global"] + row["n_spurious_minima"] + row["n_spurious_saddles"] + row["n_unresolved"]
        assert parts == row["starts"]
        assert row["spurious_rate"] == row["n_spurious_minima"] / row["starts"]
    assert result["exact"][-1]["n_spurious_minima"] > 0  # k = 10: about a third of the starts (Table 1)


def test_each_example_spurious_point_is_a_strict_local_minimum_by_brute_force(result):
    """Independent of the autograd Hessian: central differences of the closed-form loss give ∇L ≈ 0 and a positive
    definite Hessian, and random perturbations of size 1e-3 all raise the loss."""
    examples = [r for r in result["exact"] + result["over"] if r["example_minimum"] is not None]
    assert examples
    for row in examples:
        W, V = torch.tensor(row["example_minimum"], dtype=torch.float64), torch.eye(row["k"], dtype=torch.float64)
        assert row["largest_grad_norm"] <= 1e-10 and row["smallest_min_eigenvalue"] > 0
        loss, P, h = float(population_loss(W, V)), W.numel(), 1e-4
        assert loss >= 1e-3  # well above the global minimum 0
        basis = torch.eye(P, dtype=torch.float64).reshape(P, *W.shape)
        slope = (population_loss(W + 1e-6 * basis, V) - population_loss(W - 1e-6 * basis, V)) / 2e-6
        assert float(slope.abs().max()) < 1e-7
        plus, minus = basis[:, None] + basis[None, :], basis[:, None] - basis[None, :]
        hessian = (population_loss(W + h * plus, V) - population_loss(W + h * minus, V)
                   - population_loss(W - h * minus, V) + population_loss(W - h * plus, V)).numpy() / (4 * h * h)
        assert np.linalg.eigvalsh((hessian + hessian.T) / 2)[0] > 0
        directions = torch.randn(200, *W.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
        directions = 1e-3 * directions / directions.flatten(1).norm(dim=1)[:, None, None]
        assert bool((population_loss(W + directions, V) > loss).all())


def test_a_saddle_is_classified_as_a_saddle_not_a_minimum():
    """k = n = 3 has a critical point with circulant rows (a, b, a), (a, a, b), (b, a, a) and one negative Hessian
    eigenvalue (found by plain Newton); the classification must report it as a saddle."""
    config, V = BackpropFailureConfig.fast(), torch.eye(3, dtype=torch.float64)
    a, b = 0.6594530930380949, -0.3181800696101536
    W = torch.tensor([[a, b, a], [a, a, b], [b, a, a]], dtype=torch.float64)
    for _ in range(5):
        step = torch.linalg.lstsq(population_hessian(W, V), population_gradient(W, V).reshape(-1, 1)).solution
        W = W - step.reshape(3, 3)
    assert float(population_gradient(W, V).norm()) <= config.grad_tol
    assert torch.linalg.eigvalsh(population_hessian(W, V))[0] < -0.01
    spurious, unresolved = classify_end_points(W[None], V, config)
    assert unresolved == 0 and len(spurious) == 1 and spurious[0]["index"] == 1


def test_no_spurious_minima_below_k_6():
    """Safran & Shamir find none for k < 6 (the previous study's student was stuck 75% of the time at k = 4)."""
    row = backprop_failure._relu_row(4, 4, 20, BackpropFailureConfig.fast(), torch.Generator().manual_seed(0))
    assert row["n_global"] == 20 and row["spurious_rate"] == 0


# -------------------------------------------------------------------------------- part 1: the single neuron

def test_neuron_derivatives_match_autograd():
    X, y = neuron_data(3)
    W = torch.randn(5, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    W_ = W.clone().requires_grad_()
    gradient = torch.autograd.grad(neuron_loss(W_, X, y).sum(), W_)[0]
    assert torch.allclose(neuron_gradient(W, X, y), gradient, atol=1e-14)
    hessian = torch.func.vmap(torch.func.hessian(lambda w: neuron_loss(w, X, y)))(W)
    assert torch.allclose(neuron_hessian(W, X, y), hessian, atol=1e-12)


def test_root_finder_finds_2_to_the_d_minima_and_3_to_the_d_critical_points(result):
    """The loss is Σ_i ℓ(w_i), so its critical points are the 3^d products of ℓ's three (two minima and the
    barrier) and its minima the 2^d products of ℓ's minima; the root finder does not know this."""
    for count in result["neuron"]["counts"]:
        assert count["n_minima"] == 2 ** count["d"]
        assert count["n_critical_points"] == 3 ** count["d"]
        assert count["index_counts"] == {str(m): math.comb(count["d"], m) * 2 ** (count["d"] - m)
                                         for m in range(count["d"] + 1)}
    global_1d, local_1d = result["neuron"]["minima_losses_1d"]
    assert result["neuron"]["counts"][-1]["minima_losses"][0] == pytest.approx(3 * global_1d)  # d = 3


def test_one_point_per_axis_gives_one_minimum_not_2_to_the_d():
    """The counter-case: with only the point 10 e_i per axis ℓ has a single minimum, so the count is 1."""
    count = neuron_critical_points(2, 270, np.random.default_rng(0), points=((10.0, 0.99),))
    assert count["n_minima"] == 1 != 2**2


def test_gd_failure_follows_one_minus_p_to_the_d(result):
    neuron = result["neuron"]
    assert 0.5 < neuron["p_calibration"] < 0.9
    for row in neuron["gd"]:
        assert row["max_gradient"] < 1e-5  # GD has converged, to one of the 2^d minima
        assert row["predicted"] == pytest.approx(1 - neuron["p_calibration"] ** row["d"])
    assert neuron["gd"][-1]["failure_rate"] > neuron["gd"][0]["failure_rate"] + 0.4


# ------------------------------------------------------------------------------------------------ verdicts

def test_verdicts_follow_the_numbers(result):
    assert result["agrees"] == verdicts(result)
    assert result["agrees"]["auer_count"] and result["agrees"]["spurious_minima_exist"]


def test_verdicts_say_does_not_agree_for_contradicting_numbers(result):
    bad = copy.deepcopy(result)
    bad["neuron"]["counts"][-1]["n_minima"] -= 1
    bad["neuron"]["gd"][-1]["failure_rate"] = bad["neuron"]["gd"][-1]["predicted"] - 0.5
    first, last = bad["exact"][0], bad["exact"][-1]
    first["spurious_rate"], last["spurious_rate"] = 0.9, 0.0  # falls with k
    for row in bad["over"]:
        row["spurious_rate"] = last["spurious_rate"]  # no better than n = k
    bad["exact"][0]["n_spurious_saddles"] = sum(r["n_spurious_minima"] for r in bad["exact"] + bad["over"])
    assert not any(verdicts(bad).values())
    text = backprop_failure.report({**bad, "agrees": verdicts(bad)})
    assert text.count("does not agree") == 5 and "reported, no verdict" in text


def test_save_and_report(result, tmp_path):
    paths = backprop_failure.save(result, tmp_path)
    assert sorted(p.name for p in paths) == ["backprop_failure.json", "backprop_failure.png"]
    stored = json.loads((tmp_path / "backprop_failure.json").read_text(), parse_constant=pytest.fail)
    assert stored["exact"] == result["exact"] and stored["agrees"] == result["agrees"]
    assert (tmp_path / "backprop_failure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = backprop_failure.report(result)
    assert "Auer" in text and "Safran" in text and "| paper's claim | measured | verdict |" in text
    assert result["wall_time_s"] > 0
