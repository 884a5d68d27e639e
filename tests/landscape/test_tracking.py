"""The spectrum along checkpoints against dense eigendecompositions; warm starts against cold ones."""

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from nnlift.landscape import HessianOperator, critical_point_index
from nnlift.landscape.tracking import plot_tracking, track


@pytest.mark.parametrize("k", [3, 12])
def test_eigenvalues_equal_dense_and_warm_equals_cold(run, k):
    problem, data, checkpoints, exact = run
    state = copy.deepcopy(problem.model.state_dict())
    results = {warm: track(problem.model, problem.loss_fn, data, checkpoints, k=k, tol=1e-12, warm_start=warm)
               for warm in (True, False)}
    for result in results.values():
        np.testing.assert_allclose(result.top, exact[:, ::-1][:, :k], rtol=0, atol=1e-8)
        np.testing.assert_allclose(result.bottom, exact[:, :k], rtol=0, atol=1e-8)
        assert result.top_residuals.max() < 1e-9 and result.bottom_residuals.max() < 1e-9
        assert result.top.shape == result.bottom.shape == (4, k) and result.n_params == 26
        np.testing.assert_array_equal(result.end_matvec.sum(axis=1) + 2 * k, result.n_matvec)
    np.testing.assert_allclose(results[True].top, results[False].top, rtol=0, atol=1e-10)
    np.testing.assert_allclose(results[True].bottom, results[False].bottom, rtol=0, atol=1e-10)
    assert results[True].n_matvec[0] == results[False].n_matvec[0]
    assert all(torch.equal(value, state[key]) for key, value in problem.model.state_dict().items())


def test_index_and_negative_mass(run):
    """Lanczos's count is exact when fewer than k eigenvalues are negative and a lower bound k otherwise; dense is
    exact; SLQ is `critical_point_index`'s estimate."""
    problem, data, checkpoints, exact = run
    threshold = np.sqrt(np.finfo(np.float64).eps) * np.abs(exact).max(axis=1, keepdims=True)
    negative = exact < -threshold
    n_negative, mass = negative.sum(axis=1), np.where(negative, -exact, 0).sum(axis=1)
    for k in (3, 12):
        lanczos = track(problem.model, problem.loss_fn, data, checkpoints, k=k, tol=1e-12)
        np.testing.assert_array_equal(lanczos.index_exact, n_negative < k)
        np.testing.assert_array_equal(lanczos.n_negative, np.minimum(n_negative, k))
        np.testing.assert_allclose(lanczos.negative_mass[lanczos.index_exact], mass[lanczos.index_exact], atol=1e-8)
        np.testing.assert_allclose(lanczos.negative_mass, -lanczos.bottom[:, :k].clip(max=0).sum(axis=1), atol=1e-12)
        assert lanczos.index_method == "lanczos" and not lanczos.index_matvec.any()
    assert 3 <= n_negative.min() and n_negative.max() <= 12
    dense = track(problem.model, problem.loss_fn, data, checkpoints, k=2, index="dense")
    np.testing.assert_array_equal(dense.n_negative, n_negative)
    np.testing.assert_allclose(dense.negative_mass, mass, rtol=1e-10)
    np.testing.assert_allclose(dense.index, n_negative / 26)
    assert dense.index_exact.all() and (dense.index_matvec == 26).all()
    slq = track(problem.model, problem.loss_fn, data, checkpoints, k=2, index="slq", random_state=3)
    for i, theta in enumerate(checkpoints):
        op = HessianOperator(problem.model, problem.loss_fn, data, at=theta)
        reference = critical_point_index(op, dense_max=0, n_iter=80, n_probes=16, random_state=3)
        assert slq.n_negative[i] == pytest.approx(reference.n_negative, rel=1e-12)
        assert abs(slq.n_negative[i] - n_negative[i]) < 4 * reference.std_error * 26
    assert not slq.index_exact.any() and (slq.index_matvec == 26 * 16).all()


def test_warm_starts_save_products_on_slowly_moving_checkpoints(slow_run):
    """Gradient descent with a small step on a 5-8-3 MLP (P = 75): from the second checkpoint on, the warm start
    takes 116 products where the cold one takes 169 (ratio 0.69): 21 instead of 39 at the top end, 91 instead of
    126 at the bottom, 4 for the residuals."""
    model, (X, y), checkpoints = slow_run
    cold, warm = (track(model, nn.functional.mse_loss, (X, y), checkpoints, k=2, tol=1e-10, warm_start=warm)
                  for warm in (False, True))
    assert warm.n_matvec[0] == cold.n_matvec[0]
    assert (warm.end_matvec[1:] < cold.end_matvec[1:]).all()
    assert warm.n_matvec[1:].sum() <= 0.75 * cold.n_matvec[1:].sum()
    np.testing.assert_allclose(warm.bottom, cold.bottom, rtol=0, atol=1e-10)
    np.testing.assert_allclose(warm.top, cold.top, rtol=0, atol=1e-10)


def test_one_end_repeated_checkpoints_and_other_forms(run):
    problem, data, checkpoints, exact = run
    top = track(problem.model, problem.loss_fn, data, checkpoints, k=2, which="LA", index=None)
    assert top.bottom is None and top.n_negative is None and top.index is None
    assert not top.end_matvec[:, 1].any() and (top.n_matvec == top.end_matvec[:, 0] + 2).all()
    np.testing.assert_allclose(top.top, exact[:, ::-1][:, :2], atol=1e-8)
    bottom = track(problem.model, problem.loss_fn, data, checkpoints, k=2, which="SA")
    assert bottom.top is None and bottom.end_matvec.min() > 0
    np.testing.assert_array_equal(bottom.n_matvec, bottom.end_matvec.sum(axis=1) + 2)
    np.testing.assert_allclose(bottom.bottom, exact[:, :2], atol=1e-8)
    modules = []
    for theta in checkpoints[:2]:
        module = copy.deepcopy(problem.model)
        torch.nn.utils.vector_to_parameters(theta, module.parameters())
        modules.append(module)
    same = [modules[0].state_dict(), modules[0], checkpoints[0].numpy()]
    repeated = track(problem.model, problem.loss_fn, data, same, k=3, tol=1e-12, steps=[0, 10, 20], verbose=1)
    np.testing.assert_allclose(repeated.bottom, np.repeat(exact[:1, :3], 3, axis=0), rtol=0, atol=1e-8)
    np.testing.assert_array_equal(repeated.steps, [0, 10, 20])
    assert repeated.n_matvec[1] < repeated.n_matvec[0]


@pytest.mark.parametrize("problem", ["mse"], indirect=True)
def test_plot_tracking_writes_png_and_json(run, tmp_path):
    problem, data, checkpoints, _ = run
    checkpoints = checkpoints[:3]
    warm = track(problem.model, problem.loss_fn, data, checkpoints, k=2)
    cold = track(problem.model, problem.loss_fn, data, checkpoints, k=2, warm_start=False)
    png, numbers = plot_tracking(warm, tmp_path / "spectrum.png", baseline=cold)
    assert png.read_bytes().startswith(b"\x89PNG") and numbers == tmp_path / "spectrum.json"
    saved = json.loads(numbers.read_text())
    np.testing.assert_array_equal(saved["result"]["bottom"], warm.bottom)
    np.testing.assert_array_equal(saved["baseline"]["n_matvec"], cold.n_matvec)
    assert saved["result"]["warm_start"] and not saved["baseline"]["warm_start"]
    top_only = track(problem.model, problem.loss_fn, data, checkpoints, k=2, which="LA", index=None)
    png, numbers = plot_tracking(top_only, tmp_path / "top")
    assert json.loads(numbers.read_text())["baseline"] is None and png.exists()


def test_bad_input_is_refused(run):
    problem, data, checkpoints, _ = run
    model, loss_fn = problem.model, problem.loss_fn
    with pytest.raises(ValueError, match="no snapshots"):
        track(model, loss_fn, data, [])
    with pytest.raises(ValueError, match="k must be"):
        track(model, loss_fn, data, checkpoints, k=13)
    with pytest.raises(ValueError, match="k must be"):
        track(model, loss_fn, data, checkpoints, k=0)
    with pytest.raises(ValueError, match="which"):
        track(model, loss_fn, data, checkpoints, which="LM")
    with pytest.raises(ValueError, match="index='lanczos'"):
        track(model, loss_fn, data, checkpoints, which="LA")
    with pytest.raises(ValueError, match="index must be"):
        track(model, loss_fn, data, checkpoints, index="exact")
    with pytest.raises(ValueError, match="tol"):
        track(model, loss_fn, data, checkpoints, tol=-1.0)
    with pytest.raises(ValueError, match="steps"):
        track(model, loss_fn, data, checkpoints, steps=[0, 1])
    with pytest.raises(ValueError, match="length of the selected parameters"):
        track(model, loss_fn, data, [checkpoints[0][:-1]])
    with pytest.raises(RuntimeError, match="did not converge"):
        track(model, loss_fn, data, checkpoints, k=3, tol=0, max_iter=1, ncv=7)
