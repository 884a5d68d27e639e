"""Restarts (Choromanska et al. 2015): the spread of final losses per width; the batched independent networks."""

import json
import math

import numpy as np
import pytest
import torch

from nnlift.reproduce import restarts
from nnlift.reproduce._common import BatchedMLP, load_digits_split


@pytest.fixture(scope="module")
def result():
    return restarts.run(fast=True)


def test_batched_networks_train_independently():
    """The gradient of network 0 in a batch is the gradient it gets alone: one step trains S separate networks."""
    X = torch.randn(20, 5, generator=torch.Generator().manual_seed(0))
    batch = BatchedMLP([5, 7, 3], 4, "relu", generator=torch.Generator().manual_seed(1))
    batch(X).square().mean(dim=(1, 2)).sum().backward()
    alone = BatchedMLP([5, 7, 3], 1, "relu", generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for mine, theirs in zip(alone.parameters(), batch.parameters(), strict=True):
            mine.copy_(theirs[:1])
    alone(X).square().mean().backward()
    for mine, theirs in zip(alone.parameters(), batch.parameters(), strict=True):
        torch.testing.assert_close(mine.grad, theirs.grad[:1])


def test_digits_are_pooled_and_standardised():
    data = load_digits_split(pool=2)
    assert data["X_train"].shape[1] == 16 and data["X_train"].shape[0] + data["X_test"].shape[0] == 1797
    assert data["X_train"].mean(dim=0).abs().max() < 1e-5
    assert set(data["y_train"].unique().tolist()) == set(range(10))


def test_every_restart_is_recorded_and_trained(result):
    seeds = restarts.RestartsConfig.fast().seeds
    for row in result["widths"]:
        assert len(row["train_loss"]) == len(row["test_loss"]) == seeds
        assert all(math.isfinite(v) for v in row["train_loss"] + row["test_loss"])
        assert max(row["train_loss"]) < math.log(10)  # better than chance after training
        assert row["last_epochs_relative_change"] < 0.01  # the annealed learning rate has stopped the weights
        assert -1 <= row["train_test_correlation"] <= 1
        assert row["train"]["std"] == pytest.approx(np.std(row["train_loss"], ddof=1))


def test_losses_concentrate_as_the_width_grows(result):
    narrow, wide = result["widths"][0], result["widths"][-1]
    assert narrow["width"] < wide["width"]
    assert wide["train"]["std"] * 1.5 < narrow["train"]["std"]
    assert wide["train"]["mean"] < narrow["train"]["mean"]


def test_save_and_report(result, tmp_path):
    paths = restarts.save(result, tmp_path)
    assert sorted(p.name for p in paths) == ["restarts.json", "restarts.png"]
    stored = json.loads((tmp_path / "restarts.json").read_text(), parse_constant=pytest.fail)
    assert stored["widths"][0]["train_loss"] == result["widths"][0]["train_loss"]
    assert (tmp_path / "restarts.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = restarts.report(result)
    assert "Choromanska" in text and "| claim | measured | verdict |" in text


def test_fast_run_has_enough_widths_for_a_trend(result):
    assert len(result["widths"]) >= restarts.MIN_WIDTHS
    assert "too few widths" not in restarts.report(result)


def test_trend_verdict_can_fail_and_refuses_two_widths():
    """Spearman over two widths is ±1 whatever the losses: no verdict; a rising statistic does not agree."""
    assert restarts.trend_verdict(-1.0, 2).startswith("too few widths")
    assert restarts.trend_verdict(0.4, 5) == "does not agree"
    assert restarts.trend_verdict(float("nan"), 5) == "does not agree"
    assert restarts.trend_verdict(-0.5, 5) == "partly agrees"
    assert restarts.trend_verdict(-1.0, 4) == "agrees"


def test_report_says_does_not_agree_when_the_correlation_rises_with_width(result):
    rising = json.loads(json.dumps(result))
    for rank, row in enumerate(rising["widths"]):
        row["train_test_correlation"] = -0.5 + 0.3 * rank
    rising["summary"]["spearman_width_correlation"] = 1.0
    line = next(x for x in restarts.report(rising).splitlines() if x.startswith("| train-test loss correlation"))
    assert line.endswith("| does not agree |")


def test_one_swap_among_five_widths_is_on_the_agreeing_side():
    rho = restarts.spearman([25, 50, 100, 250, 500], [0.27, 0.23, -0.17, -0.33, -0.28])
    assert rho == pytest.approx(-0.9) and restarts.trend_verdict(rho, 5) == "agrees"
