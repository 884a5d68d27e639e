"""Saddle points (Dauphin et al. 2014): critical points checked against a dense autograd Hessian, the escape from a
constructed saddle, and the runs from one shared start."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from nnlift.reproduce import saddles
from nnlift.reproduce._common import load_digits_split
from nnlift.reproduce.saddles import SaddlesConfig, make_mlp


@pytest.fixture(scope="module")
def result():
    return saddles.run(fast=True)


def _regularised_loss(config: SaddlesConfig):
    """The part-1 objective as a function of the flat θ, written independently of nnlift.landscape."""
    data = load_digits_split(pool=2, random_state=0, dtype=torch.float64)
    X, Y = data["X_train"][:config.n_rows], F.one_hot(data["y_train"][:config.n_rows], 10).double()
    model = make_mlp(16, config.hidden, 10, 0)
    names, shapes = [n for n, _ in model.named_parameters()], [p.shape for p in model.parameters()]

    def loss(theta):
        params, start = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            params[name] = theta[start:start + shape.numel()].reshape(shape)
            start += shape.numel()
        return F.mse_loss(functional_call(model, params, (X,)), Y) + 0.5 * config.weight_decay * theta @ theta

    return loss


def test_converged_critical_points_have_zero_gradient_and_the_dense_index(result):
    config = SaddlesConfig.fast()
    loss = _regularised_loss(config)
    converged = [p for p in result["critical_points"] if p["status"] == "converged"]
    assert converged and result["summary"]["n_converged"] == len(converged)
    for point in converged:
        theta = torch.tensor(point["theta"], dtype=torch.float64, requires_grad=True)
        assert len(point["theta"]) == result["n_params"]
        (gradient,) = torch.autograd.grad(loss(theta), theta)
        assert float(gradient.norm()) < 1e-7
        eigenvalues = np.linalg.eigvalsh(torch.autograd.functional.hessian(loss, theta.detach()).numpy())
        negative = int(np.sum(eigenvalues < -math.sqrt(np.finfo(float).eps) * np.abs(eigenvalues).max()))
        assert point["n_negative"] == negative
        assert point["index"] == pytest.approx(negative / len(eigenvalues))
        assert point["lambda_min"] == pytest.approx(eigenvalues[0], abs=1e-8)
    for point in result["critical_points"]:
        assert point["status"] in ("converged", "stalled", "max_iter")
        assert (point["grad_norm"] <= config.grad_tol) == (point["status"] == "converged")


def test_newton_is_attracted_to_the_saddle_and_sfn_escapes_at_any_curvature(result):
    low, high = result["escape"]
    assert (low["curvature"], high["curvature"]) == (1.0, 100.0)
    for row in (low, high):
        assert row["newton"]["iterations"] is None
        assert np.abs(row["newton"]["final_point"]).max() < 1e-6  # sits on the saddle (0, 0)
        assert row["sfn"]["final_value"] < -0.125 and row["gd"]["final_value"] < -0.125
    assert abs(high["sfn"]["iterations"] - low["sfn"]["iterations"]) <= 2
    assert high["gd"]["iterations"] > 30 * low["gd"]["iterations"]


def test_runs_from_the_same_start(result):
    best = result["training"]["best"]
    assert set(best) == {"sgd", "newton", "sfn"}
    for run in best.values():
        assert len(run["curve"]) == SaddlesConfig.fast().train_steps + 1
        assert all(math.isfinite(v) for v in run["curve"]) and run["final_loss"] < run["curve"][0]
    assert best["newton"]["curve"][0] == pytest.approx(best["sfn"]["curve"][0])  # the same start
    assert best["sfn"]["final_loss"] < best["sgd"]["final_loss"]


def test_save_and_report(result, tmp_path):
    paths = saddles.save(result, tmp_path)
    assert sorted(p.name for p in paths) == ["saddles.json", "saddles.png"]
    stored = json.loads((tmp_path / "saddles.json").read_text(), parse_constant=pytest.fail)
    assert stored["summary"]["n_converged"] == result["summary"]["n_converged"]
    assert (tmp_path / "saddles.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = saddles.report(result)
    assert "Dauphin" in text and "| claim | measured | verdict |" in text
