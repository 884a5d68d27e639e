"""Saddle points (Dauphin et al. 2014): critical points checked against a dense autograd Hessian, the study's
Newton/SFN step against nnlift.optim, the escape from a constructed saddle against its prediction (and a function
without a saddle that must fail it), the verdict functions on numbers that must fail, and the runs from one start."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from nnlift.landscape import flatten_params
from nnlift.optim import Newton, SaddleFreeNewton
from nnlift.reproduce import saddles
from nnlift.reproduce._common import load_digits_split
from nnlift.reproduce.saddles import (
    RegularisedMSE,
    SaddlesConfig,
    compare_starts,
    count_saddles,
    escape_checks,
    make_mlp,
    predicted_escape,
    subspace_newton_step,
)


@pytest.fixture(scope="module")
def result():
    return saddles.run(fast=True)


def _data(config: SaddlesConfig):
    data = load_digits_split(pool=2, random_state=0, dtype=torch.float64)
    return data["X_train"][:config.n_rows], F.one_hot(data["y_train"][:config.n_rows], 10).double()


def _regularised_loss(config: SaddlesConfig):
    """The part-1 objective as a function of the flat θ, written independently of nnlift.landscape."""
    X, Y = _data(config)
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


@pytest.mark.parametrize(("k", "absolute", "damping"), [(None, False, (1e-2,)), (None, True, (1e-3, 1e-2, 1e-1, 1.0)),
                                                         (10, True, (1e-3, 1e-2, 1e-1, 1.0))])
def test_the_study_step_is_the_library_newton_and_saddle_free_newton_step(k, absolute, damping):
    config = SaddlesConfig.fast()
    X, Y = _data(config)
    model = make_mlp(16, config.hidden, 10, 7)
    theta0 = flatten_params(model)
    k = k or len(theta0)
    objective = RegularisedMSE(make_mlp(16, config.hidden, 10, 0), X, Y, 0.0)
    theta, info = subspace_newton_step(objective, theta0, k=k, damping=damping, absolute=absolute,
                                       generator=torch.Generator().manual_seed(0))
    optimizer = (SaddleFreeNewton(model, F.mse_loss, k=k, damping=damping) if absolute
                 else Newton(model, F.mse_loss, damping=damping[0]))
    assert optimizer.step(lambda: (X, Y)) == pytest.approx(info["loss"], rel=1e-12)
    assert torch.allclose(theta, flatten_params(model), rtol=1e-7, atol=1e-9)
    assert objective.loss(theta) < info["loss"] and 0 < info["step_size"] <= 1
    if absolute:
        assert info["damping"] == optimizer.global_state["damping"]


def test_the_penalised_loss_adds_the_penalty():
    config = SaddlesConfig.fast()
    X, Y = _data(config)
    objective = RegularisedMSE(make_mlp(16, config.hidden, 10, 0), X, Y, config.weight_decay)
    theta = flatten_params(make_mlp(16, config.hidden, 10, 3))
    assert objective.loss(theta) == pytest.approx(float(_regularised_loss(config)(theta)), rel=1e-12)
    assert objective.loss(theta) - objective.data_loss(theta) == pytest.approx(
        0.5 * config.weight_decay * float(theta @ theta))


def test_escape_from_the_constructed_saddle_matches_the_prediction(result):
    low, high = result["escape"]
    assert (low["curvature"], high["curvature"]) == (1.0, 100.0)
    start = SaddlesConfig.fast().escape_start
    assert predicted_escape(1.0, start)["gd"] == pytest.approx(math.log(0.5412 / start) / math.log(2), rel=1e-3)
    for row in (low, high):
        assert row["newton"]["iterations"] is None
        assert np.abs(row["newton"]["final_point"]).max() < 1e-6  # sits on the saddle (0, 0)
        assert row["newton"]["lambda_min"] == pytest.approx(-1.0)
        assert row["sfn"]["final_value"] < -0.125 and row["gd"]["final_value"] < -0.125
    assert low["sfn"]["iterations"] == high["sfn"]["iterations"] == math.ceil(predicted_escape(1.0, start)["sfn"])
    assert high["gd"]["iterations"] > 60 * low["gd"]["iterations"]
    checks = result["summary"]["escape"]
    assert checks["agrees"] and all(0.95 < r < 1.1 for r in checks["gd_ratio"] + checks["sfn_ratio"])


def test_a_function_without_a_saddle_fails_the_escape_verdict():
    config = SaddlesConfig.fast()
    rows = saddles._escape(config, sign=1.0)  # ½cx² + ½y² + ¼y⁴: a minimum at 0
    checks = escape_checks(rows, config.escape_start)
    assert all(row[m]["iterations"] is None for row in rows for m in ("gd", "sfn", "newton"))
    assert all(v == pytest.approx(1.0) for v in checks["newton_lambda_min"])  # Newton converges, to a minimum
    assert not checks["gd_agrees"] and not checks["sfn_agrees"] and not checks["newton_agrees"]
    assert not checks["agrees"]


def _fabricated(curvatures, gd, sfn, newton_iterations=None, newton_point=(0.0, 0.0), newton_lambda=-1.0):
    return [{"curvature": c, "gd": {"iterations": g}, "sfn": {"iterations": s},
             "newton": {"iterations": newton_iterations, "final_point": list(newton_point),
                        "lambda_min": newton_lambda}} for c, g, s in zip(curvatures, gd, sfn, strict=True)]


def test_escape_verdict_fails_on_numbers_against_the_prediction():
    curvatures, start = [1.0, 10.0, 100.0, 1000.0], 1e-4
    gd = [round(predicted_escape(c, start)["gd"]) + 1 for c in curvatures]
    sfn = [round(predicted_escape(c, start)["sfn"]) + 1 for c in curvatures]
    assert escape_checks(_fabricated(curvatures, gd, sfn), start)["agrees"]
    growing = escape_checks(_fabricated(curvatures, gd, [13, 30, 120, 900]), start)  # SFN slows down with c
    assert not growing["sfn_agrees"] and not growing["agrees"] and growing["gd_agrees"]
    flat_gd = escape_checks(_fabricated(curvatures, [13] * 4, sfn), start)  # GD not slowed by c
    assert not flat_gd["gd_agrees"] and not flat_gd["agrees"]
    assert not escape_checks(_fabricated(curvatures, gd, [13, 13, None, 13]), start)["agrees"]
    assert not escape_checks(_fabricated(curvatures, gd, sfn, newton_iterations=20), start)["agrees"]
    assert not escape_checks(_fabricated(curvatures, gd, sfn, newton_point=(0.0, 0.3)), start)["agrees"]
    assert not escape_checks(_fabricated(curvatures, gd, sfn, newton_lambda=1.0), start)["agrees"]


def test_start_and_saddle_verdicts_fail_on_numbers_against_the_claim():
    assert compare_starts([1, 1, 1], [2, 2, 2], [3, 3, 3]) == {"n": 3, "below_newton": 3, "below_sgd": 3,
                                                                "below_both": 3, "agrees": True}
    assert not compare_starts([2, 1, 3], [1, 2, 2], [3, 3, 3])["agrees"]  # below both on 1 of 3
    assert not compare_starts([1, 1], [2, 2], [0.5, 3])["agrees"]  # a tie at half is no majority
    assert count_saddles([-0.1, -0.2, 1e-6], [1.0, 1.0, 1.0]) == {"n": 3, "at_saddle": 2, "agrees": True}
    assert not count_saddles([-1e-4, 2e-6], [1.0, 1.0])["agrees"]  # flat, not negative: no saddle


def test_runs_from_the_same_start(result):
    config = SaddlesConfig.fast()
    training, summary = result["training"], result["summary"]
    assert len(training["starts"]) == config.starts
    for start in training["starts"]:
        assert set(start) == {"seed", "sgd", "newton", "sfn"}
        initial = start["sfn"]["curve"][0]
        for name in ("sgd", "newton", "sfn"):
            run = start[name]
            assert len(run["curve"]) == config.train_steps + 1 and run["curve"][0] == pytest.approx(initial)
            assert all(math.isfinite(v) for v in run["curve"]) and run["final_loss"] < initial
            assert run["early_loss"] == run["curve"][round(config.early_fraction * config.train_steps)]
            assert run["lambda_min"] <= run["lambda_max"]
        assert start["sfn"]["positive_definite_steps"] == config.train_steps
        assert sum(start["newton"]["damping_chosen"].values()) == config.train_steps
    finals = {name: [s[name]["final_loss"] for s in training["starts"]] for name in ("sfn", "newton", "sgd")}
    assert summary["final"] == compare_starts(finals["sfn"], finals["newton"], finals["sgd"])
    factors = [row["factor"] for row in training["ablation"]]
    assert factors == ["paper's setting", "fixed damping", "Krylov size", "weight penalty"]
    paper, penalty = training["ablation"][0], training["ablation"][-1]
    assert paper["sfn"]["final_loss"] == training["starts"][0]["sfn"]["final_loss"]
    assert penalty["weight_decay"] == 3e-3 and penalty["newton"]["final_loss"] > penalty["newton"]["data_loss"]
    assert summary["old_setting"]["newton_final"] == training["ablation"][1]["newton"]["final_loss"]


def test_save_and_report(result, tmp_path):
    paths = saddles.save(result, tmp_path)
    assert sorted(p.name for p in paths) == ["saddles.json", "saddles.png"]
    stored = json.loads((tmp_path / "saddles.json").read_text(), parse_constant=pytest.fail)
    assert stored["summary"]["n_converged"] == result["summary"]["n_converged"]
    assert (tmp_path / "saddles.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = saddles.report(result)
    assert "Dauphin" in text and "| claim | measured | verdict |" in text
    assert "SFN vs Newton by damping / Krylov size / weight penalty" in text and "| factor | k |" in text
    assert text.count("| paper's setting |") == 1
