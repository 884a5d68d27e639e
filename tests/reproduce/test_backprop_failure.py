"""Where backprop gets stuck: the single sigmoid neuron with 2^d local minima, and ReLU students of a ReLU teacher."""

import json
import math

import numpy as np
import pytest
import torch

from nnlift.reproduce import backprop_failure
from nnlift.reproduce.backprop_failure import BackpropFailureConfig, neuron_loss_1d, relative_test_error


@pytest.fixture(scope="module")
def result():
    return backprop_failure.run(fast=True)


def test_the_axis_loss_has_a_global_and_a_worse_local_minimum(result):
    land = result["neuron_landscape"]
    assert land["local_min"] < land["barrier"] < land["global_min"]
    assert land["global_loss"] < land["local_loss"] < neuron_loss_1d(land["barrier"])
    assert land["p_global_basin"] == pytest.approx(0.5 * math.erfc(land["barrier"] / math.sqrt(2)))
    h = 1e-5
    for w in (land["local_min"], land["global_min"]):  # stationary
        assert abs(neuron_loss_1d(w + h) - neuron_loss_1d(w - h)) / (2 * h) < 1e-6


def test_single_neuron_failure_rate_is_one_minus_p_to_the_d(result):
    starts = BackpropFailureConfig.fast().neuron_starts
    for row in result["neuron"]:
        assert row["max_gradient"] < 1e-3  # GD has converged, to one of the 2^d minima
        standard_error = math.sqrt(row["predicted"] * (1 - row["predicted"]) / starts)
        assert abs(row["failure_rate"] - row["predicted"]) <= 3 * standard_error + 1e-9
    assert result["neuron"][-1]["failure_rate"] > result["neuron"][0]["failure_rate"] + 0.5


def test_relative_test_error_is_zero_for_the_teacher_and_one_for_the_mean():
    y = torch.randn(500, 1, generator=torch.Generator().manual_seed(0))
    assert relative_test_error(y[None].clone(), y) == pytest.approx([0.0])
    assert relative_test_error(y.mean().expand(1, 500, 1), y) == pytest.approx([499 / 500])


def test_relu_students_are_classified_by_the_threshold(result):
    config = BackpropFailureConfig.fast()
    exact, wider = result["width_sweep"]
    assert (exact["width"], wider["width"]) == (config.k, 2 * config.k)
    for row in result["width_sweep"]:
        errors = np.array(row["errors"])
        assert len(errors) == config.seeds and np.all(errors >= 0)
        assert row["failure_rate"] == np.mean(errors > config.threshold)
    assert wider["failure_rate"] < exact["failure_rate"]
    assert min(exact["errors"]) > 3 * config.threshold  # the exact-width students are stuck well above it


def test_save_and_report(result, tmp_path):
    paths = backprop_failure.save(result, tmp_path)
    assert sorted(p.name for p in paths) == ["backprop_failure.json", "backprop_failure.png"]
    stored = json.loads((tmp_path / "backprop_failure.json").read_text(), parse_constant=pytest.fail)
    assert stored["neuron"] == result["neuron"]
    assert (tmp_path / "backprop_failure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = backprop_failure.report(result)
    assert "Auer" in text and "| claim | measured | verdict |" in text
