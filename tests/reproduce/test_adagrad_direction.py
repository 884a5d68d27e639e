"""AdaGrad's limit direction (Qian & Qian 2019): the verdicts rest on the measured path, not only on a fit."""

import json

import numpy as np
import pytest

from nnlift.reproduce import adagrad_direction


@pytest.fixture(scope="module")
def result():
    return adagrad_direction.run(fast=True)


def _fabricated(angle_to_predicted, predicted=40.0, steps=60):
    """A result whose AdaGrad path tends to `predicted` degrees from ŵ like 1/ln t (fit exact), GD's to 0."""
    t = np.unique(np.geomspace(1, 1e6, steps).astype(int))
    fit = {"offset": predicted, "c": -90.0, "r2": 1.0, "t_min": int(t[t >= 1e3][0])}
    ada_angle = predicted - 90.0 / np.log(np.maximum(t, 2))
    gd_angle = 40.0 / np.log(np.maximum(t, 2))
    result = {"t": t.tolist(), "predicted_angle": predicted,
              "gd": {"angle": gd_angle.tolist(), "fit": {"offset": 0.0, "c": 40.0, "r2": 1.0, "t_min": fit["t_min"]}},
              "adagrad": {"angle": ada_angle.tolist(), "fit": fit,
                          "angle_to_predicted": angle_to_predicted(t, predicted - ada_angle).tolist()}}
    for name in ("gd", "adagrad"):
        result[name]["fit_residual"] = adagrad_direction.fit_residual(t, result[name]["angle"], result[name]["fit"])
    return result


def test_a_consistent_path_agrees():
    verdicts = adagrad_direction.verdicts(_fabricated(lambda t, gap: gap))
    assert verdicts == {"adagrad_limit": True, "differs_from_l2": True, "gd_to_l2": True}


def test_extrapolation_alone_does_not_make_agreement():
    """The fit still extrapolates to the prediction, but the measured angle to it grows over the last decades."""
    stalls = adagrad_direction.verdicts(_fabricated(lambda t, gap: gap + 2e-6 * t))
    assert not stalls["adagrad_limit"]


def test_a_poor_fit_does_not_agree():
    result = _fabricated(lambda t, gap: gap)
    result["adagrad"]["angle"] = (np.array(result["adagrad"]["angle"])
                                  + 2.0 * np.sin(np.arange(len(result["t"])))).tolist()
    result["adagrad"]["fit_residual"] = adagrad_direction.fit_residual(result["t"], result["adagrad"]["angle"],
                                                                       result["adagrad"]["fit"])
    assert result["adagrad"]["fit_residual"] > adagrad_direction.FIT_TOL
    assert not adagrad_direction.verdicts(result)["adagrad_limit"]


def test_a_limit_at_the_l2_max_margin_does_not_differ_from_l2():
    """If AdaGrad's predicted limit were ŵ itself (as GD's), 'differs from the L2 max margin' must fail."""
    result = _fabricated(lambda t, gap: gap, predicted=0.0)
    result["adagrad"]["angle"] = result["gd"]["angle"]
    assert not adagrad_direction.verdicts(result)["differs_from_l2"]


def test_fast_run_save_report(result, tmp_path):
    assert result["agrees"] == adagrad_direction.verdicts(result)
    assert result["agrees"]["differs_from_l2"] and result["agrees"]["gd_to_l2"]
    paths = adagrad_direction.save(result, tmp_path)
    assert [p.name for p in paths] == ["adagrad_direction.json", "adagrad_direction.png"]
    assert json.loads(paths[0].read_text())["agrees"] == result["agrees"]
    text = adagrad_direction.report(result)
    assert "Qian & Qian" in text and "| measured at T | extrapolated limit |" in text
