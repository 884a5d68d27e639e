"""Optimizers study (Martens 2010; Martens & Grosse 2015; Nocedal & Wright ch. 5): the fast run, the pass counting,
the references (PCA level, linear CG, the dense Hessian) and verdicts that can say "does not agree"."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.sparse.linalg import cg
from sklearn.decomposition import PCA

from nnlift.landscape.operators import HessianOperator
from nnlift.optim import HessianFree, NonlinearCG
from nnlift.reproduce import optimizers


@pytest.fixture(scope="module")
def result():
    return optimizers.run(fast=True)


def test_every_method_runs_from_the_shared_start_to_the_budget(result):
    config = optimizers.OptimizersConfig.fast()
    assert list(result["methods"]) == list(optimizers.METHODS)
    for block in result["methods"].values():
        for one in block["runs"]:
            assert one["trace"]["loss"][0] == pytest.approx(result["start_loss"])  # one shared initialisation
            assert one["status"] == "budget" and one["epochs"] >= config.epochs
            assert math.isfinite(one["loss_at_budget"]) and one["loss_at_budget"] < result["start_loss"]
        chosen = block["runs"][block["best"]]["loss_at_budget"]
        assert chosen == min(one["loss_at_budget"] for one in block["runs"])
    assert set(result["agrees"]) >= {"kfac_beats_cm", "hf_beats_gd", "pr_beats_fr", "undamped_newton_worse",
                                     "pca_level_as_predicted", "hessian_indefinite_at_start"}
    assert all(isinstance(value, bool) for value in result["agrees"].values())
    assert result["hessian_min_eigenvalue_at_start"] < 0  # tanh autoencoder at a random start: not convex there


def test_first_order_passes_are_counted_per_row(result):
    """GD makes one full-batch gradient per step; CM one gradient on `batch` rows per step (the last one short)."""
    config, n = optimizers.OptimizersConfig.fast(), result["n_rows"]
    for one in result["methods"]["gd"]["runs"]:
        assert one["passes_by_kind"] == {"gradient": one["steps"]}
    per_epoch = math.ceil(n / config.batch)
    for one in result["methods"]["cm"]["runs"]:
        assert one["steps"] == per_epoch * one["epochs"]


def test_curvature_products_are_counted_as_the_optimiser_reports_them():
    X = optimizers.autoencoder_data(60, 0)
    model = optimizers.make_autoencoder([4], 0)
    passes = optimizers.Passes()
    optimizer = HessianFree(model, F.mse_loss, damping=0.1)
    with optimizers.counting(passes):
        for _ in range(3):
            optimizer.step(lambda: (X, X))
    assert passes.rows["curvature_product"] == optimizer.global_state["n_products"] * len(X)
    assert passes.rows["gradient"] == passes.rows["linearize"] == 3 * len(X)
    assert passes.rows["loss"] >= 3 * 2 * len(X)  # the start, ≥ 1 CG-backtracking and ≥ 1 Armijo trial per step
    before = dict(passes.rows)
    optimizer.step(lambda: (X, X))  # outside the context: nothing counted, the library restored
    assert dict(passes.rows) == before


def test_pca_level_is_sklearns_reconstruction_error():
    X = optimizers.autoencoder_data(200, 3)
    pca = PCA(n_components=8).fit(X.numpy())
    reconstruction = pca.inverse_transform(pca.transform(X.numpy()))
    assert optimizers.pca_error(X, 8) == pytest.approx(np.mean((reconstruction - X.numpy()) ** 2), rel=1e-10)


@pytest.mark.parametrize("method", ["FR", "PR+"])
def test_nonlinear_cg_is_linear_cg_on_a_convex_quadratic(method):
    """N&W §5.2: with exact line searches on ½xᵀAx − bᵀx both β formulas give linear CG's iterates and reach the
    minimiser in n steps (scipy's `cg` as the reference)."""
    rng = np.random.default_rng(0)
    n = 8
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A, b = Q @ np.diag(np.geomspace(1, 30, n)) @ Q.T, rng.standard_normal(n)
    reference = []
    cg(A, b, x0=np.zeros(n), rtol=1e-14, maxiter=n, callback=lambda xk: reference.append(xk.copy()))
    x = torch.zeros(n, dtype=torch.float64, requires_grad=True)
    At, bt = torch.as_tensor(A), torch.as_tensor(b)
    optimizer = NonlinearCG([x], method=method, c1=1e-8, c2=1e-6)

    def closure():
        optimizer.zero_grad()
        loss = 0.5 * x @ At @ x - bt @ x
        loss.backward()
        return loss

    for expected in reference[:n]:
        optimizer.step(closure)
        np.testing.assert_allclose(x.detach().numpy(), expected, atol=1e-8)
    np.testing.assert_allclose(x.detach().numpy(), np.linalg.solve(A, b), atol=1e-8)


def test_smallest_hessian_eigenvalue_matches_the_dense_hessian():
    X = optimizers.autoencoder_data(40, 1)
    model = optimizers.make_autoencoder([2], 1)
    dense = HessianOperator(model, F.mse_loss, (X, X)).to_dense()
    expected = float(torch.linalg.eigvalsh((dense + dense.T) / 2)[0])
    assert optimizers._min_hessian_eigenvalue(model, X, 0) == pytest.approx(expected, rel=1e-4, abs=1e-8)


def _best(losses: dict[str, float], cos_fr: float = 0.2, cos_pr: float = 0.5, reach=()) -> dict:
    return {method: {"loss_at_budget": loss, "epochs_to_pca": 10.0 if method in reach else None,
                     "records": {"median_cos": {"fr": cos_fr, "pr+": cos_pr}.get(method, 0.0)}}
            for method, loss in losses.items()}


def test_verdicts_agree_and_disagree_with_constructed_numbers():
    claimed = {"gd": 1.0, "cm": 0.5, "kfac": 0.3, "hf": 0.4, "newton-damped": 0.45, "newton": 0.9, "fr": 0.8,
               "fr-restart": 0.6, "pr+": 0.5, "pr+-restart": 0.55}
    agreeing = optimizers.verdicts(_best(claimed, reach=("cm", "kfac", "hf")), margin=0.05)
    assert all(agreeing.values()), agreeing
    contrary = {"gd": 0.3, "cm": 0.3, "kfac": 0.31, "hf": 0.5, "newton-damped": 0.45, "newton": 0.44, "fr": 0.5,
                "fr-restart": 0.5, "pr+": 0.49, "pr+-restart": 0.6}
    disagreeing = optimizers.verdicts(_best(contrary, cos_fr=0.6, cos_pr=0.5, reach=("gd", "cm")), margin=0.05)
    assert not any(disagreeing.values()), disagreeing
    diverged = dict(claimed, newton=math.inf)  # a diverged undamped Newton counts as worse
    assert optimizers.verdicts(_best(diverged, reach=("cm", "kfac", "hf")), margin=0.05)["undamped_newton_worse"]


def test_a_broken_step_size_is_reported_as_diverged():
    config = optimizers.OptimizersConfig.fast()
    X = optimizers.autoencoder_data(config.n_rows, 0)
    template = optimizers.make_autoencoder(config.hidden, 0)
    one = optimizers.drive(optimizers._sgd, dict(lr=1e4, full_batch=True), template, X, config, 0)
    assert one["status"] == "diverged" and one["loss_at_budget"] == math.inf
    assert next(template.parameters()).grad is None  # the template itself was not trained


def test_save_and_report(result, tmp_path):
    paths = optimizers.save(result, tmp_path)
    assert sorted(p.name for p in paths) == ["optimizers.json", "optimizers.png"]
    stored = json.loads((tmp_path / "optimizers.json").read_text(), parse_constant=pytest.fail)
    assert stored["agrees"] == result["agrees"]
    assert (tmp_path / "optimizers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = optimizers.report(result)
    assert "Martens" in text and "| claim | measured | verdict |" in text
    assert text.count("agrees") + text.count("does not agree") >= len(result["agrees"])
