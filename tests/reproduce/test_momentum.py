"""GD vs classical momentum vs Nesterov (Sutskever et al. 2013): rates on an ill-conditioned quadratic and a
small autoencoder."""

import json
import math

import numpy as np
import pytest
import torch

from nnlift.reproduce import momentum
from nnlift.reproduce.momentum import momentum_step, quadratic_parameters, spectral_radius


@pytest.fixture(scope="module")
def result():
    return momentum.run(fast=True)


@pytest.mark.parametrize("kappa", [10.0, 1e3])
def test_spectral_radii_are_the_textbook_rates(kappa):
    eigenvalues = np.geomspace(1 / kappa, 1, 30)
    root = math.sqrt(kappa)
    assert spectral_radius("gd", *quadratic_parameters("gd", kappa), eigenvalues) == pytest.approx(
        (kappa - 1) / (kappa + 1), rel=1e-9)
    assert spectral_radius("cm", *quadratic_parameters("cm", kappa), eigenvalues) == pytest.approx(
        (root - 1) / (root + 1), rel=1e-4)
    assert spectral_radius("nag", *quadratic_parameters("nag", kappa), eigenvalues) == pytest.approx(
        math.sqrt((1 - 1 / kappa) * (root - 1) / (root + 1)), rel=1e-6)


def test_lookahead_nesterov_is_sutskevers_nesterov():
    """φ = θ + μv of the stored iterate equals Sutskever et al.'s eq. (3)-(4) iterate at every step."""
    A = torch.diag(torch.tensor([1.0, 0.1, 0.01], dtype=torch.float64))
    lr, mu = 0.5, 0.9
    theta, v = torch.ones(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    phi, w = theta.clone(), v.clone()
    for _ in range(20):
        v = mu * v - lr * A @ (theta + mu * v)
        theta = theta + v
        momentum_step([phi], [w], [A @ phi], torch.tensor(lr), torch.tensor(mu), torch.tensor(True))
        torch.testing.assert_close(phi, theta + mu * v)


def test_momentum_needs_about_sqrt_kappa_fewer_iterations(result):
    q = result["quadratic"]
    root = math.sqrt(q["kappa"])
    assert q["gd"]["iterations"] == pytest.approx(q["gd"]["predicted"], rel=0.2)
    assert q["nag"]["iterations"] == pytest.approx(q["nag"]["predicted"], rel=0.2)
    assert q["cm"]["predicted"] <= q["cm"]["iterations"] <= 1.5 * q["cm"]["predicted"]
    assert 0.5 * root <= q["gd"]["iterations"] / q["cm"]["iterations"] <= 2 * root
    assert 0.25 * root <= q["gd"]["iterations"] / q["nag"]["iterations"] <= root


def test_iterations_scale_like_kappa_and_its_square_root(result):
    slopes = result["slopes"]
    assert slopes["gd"] == pytest.approx(1.0, abs=0.1)
    assert slopes["cm"] == pytest.approx(0.5, abs=0.1)
    assert slopes["nag"] == pytest.approx(0.5, abs=0.1)


def test_autoencoder_runs_decrease_the_loss(result):
    ae = result["autoencoder"]
    assert 0 < ae["pca_error"] < 0.1
    for run in ae["runs"].values():
        assert math.isfinite(run["final_loss"]) and run["final_loss"] < run["curve"][0]
    assert min(ae["runs"]["cm"]["final_loss"], ae["runs"]["nag"]["final_loss"]) < ae["runs"]["gd"]["final_loss"]


def test_save_and_report(result, tmp_path):
    paths = momentum.save(result, tmp_path)
    assert sorted(p.name for p in paths) == ["momentum.json", "momentum.png"]
    stored = json.loads((tmp_path / "momentum.json").read_text(), parse_constant=pytest.fail)
    assert stored["quadratic"]["gd"]["iterations"] == result["quadratic"]["gd"]["iterations"]
    assert (tmp_path / "momentum.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = momentum.report(result)
    assert "Sutskever" in text and "| claim | measured | verdict |" in text


def test_quadratic_verdicts_agree_on_the_measured_run(result):
    assert momentum.quadratic_verdicts(result) == {"rates": True, "speedup": True, "slopes": True}


def test_quadratic_verdicts_fail_when_momentum_scales_like_gd(result):
    """Fabricated counts: CM and NAG take GD's iterations (slope 1 in κ, no √κ speed-up): none of the checks agree."""
    fake = json.loads(json.dumps(result))
    for row in [*fake["sweep"], fake["quadratic"]]:
        for method in ("cm", "nag"):
            row[method]["iterations"] = row["gd"]["iterations"]
    kappas = [r["kappa"] for r in fake["sweep"]]
    fake["slopes"] = {m: momentum._slope(kappas, [r[m]["iterations"] for r in fake["sweep"]])
                      for m in ("gd", "cm", "nag")}
    assert fake["slopes"]["cm"] == pytest.approx(1.0, abs=0.05)
    assert momentum.quadratic_verdicts(fake) == {"rates": False, "speedup": False, "slopes": False}
    lines = [x for x in momentum.report(fake).splitlines() if x.startswith(("| quadratic", "| iterations grow"))]
    assert len(lines) == 3 and all(x.endswith("| does not agree |") for x in lines)


def test_rates_verdict_fails_outside_the_iteration_factor(result):
    fake = json.loads(json.dumps(result))
    row = fake["sweep"][-1]["nag"]
    row["iterations"] = math.ceil(row["predicted"] * momentum.ITERATION_FACTOR * 1.1)
    assert not momentum.quadratic_verdicts(fake)["rates"]
