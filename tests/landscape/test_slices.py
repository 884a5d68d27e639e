"""Loss slices: the vmapped grids against slow loops over copies of the model, filter normalisation, plots."""

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from nnlift.landscape import (
    HessianOperator,
    curvature_map_2d,
    filter_normalized_direction,
    flatten_params,
    loss_interpolation,
    loss_slice_1d,
    loss_slice_2d,
    plot_slice,
)


def _loss_at(model, loss_fn, X, y, theta) -> float:
    """The slow way: a copy of the model with its parameters overwritten."""
    other = copy.deepcopy(model)
    torch.nn.utils.vector_to_parameters(theta, other.parameters())
    with torch.no_grad():
        return loss_fn(other(X), y).item()


def test_1d_slice_at_zero_is_the_loss_at_the_weights(problem):
    result = loss_slice_1d(problem.model, problem.loss_fn, (problem.X, problem.y), alphas=np.linspace(-1, 1, 11),
                           random_state=0)
    with torch.no_grad():
        loss = problem.loss_fn(problem.model(problem.X), problem.y).item()
    assert result.values["loss"][5] == pytest.approx(loss, abs=1e-14)
    assert result.values["loss"].shape == (11,) and result.directions.shape == (1, 26)


def test_filter_normalisation_matches_the_weights_norms():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 4)).double()
    named = dict(model.named_parameters())
    for ignore_bias in (True, False):
        d = filter_normalized_direction(model, random_state=0, ignore_bias=ignore_bias)
        parts = dict(zip(named, torch.split(d, [p.numel() for p in named.values()]), strict=True))
        for name, weight in named.items():
            part = parts[name].reshape(weight.shape)
            if weight.ndim > 1:
                torch.testing.assert_close(part.reshape(len(part), -1).norm(dim=1),
                                           weight.detach().reshape(len(weight), -1).norm(dim=1), rtol=1e-12, atol=0)
                assert not torch.allclose(part, weight)
            else:
                torch.testing.assert_close(part, torch.zeros_like(weight) if ignore_bias else weight.detach())
    torch.testing.assert_close(filter_normalized_direction(model, random_state=3),
                               filter_normalized_direction(model, random_state=3))


def test_vmapped_2d_grid_equals_a_slow_loop(problem):
    alphas, betas = np.linspace(-1, 1, 5), np.linspace(-0.5, 1.5, 5)
    result = loss_slice_2d(problem.model, problem.loss_fn, (problem.X, problem.y), alphas=alphas, betas=betas,
                           random_state=1, chunk_size=7)
    theta, D = flatten_params(problem.model), torch.from_numpy(result.directions)
    slow = [[_loss_at(problem.model, problem.loss_fn, problem.X, problem.y, theta + a * D[0] + b * D[1])
             for b in betas] for a in alphas]
    np.testing.assert_allclose(result.values["loss"], slow, rtol=0, atol=1e-13)


def test_batch_norm_in_train_mode_and_batches():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 1)).double().train()
    state = copy.deepcopy(model.state_dict())
    X, y = torch.randn(12, 3, dtype=torch.float64), torch.randn(12, 1, dtype=torch.float64)
    alphas = np.linspace(-1, 1, 3)
    batches = [(X[:5], y[:5]), (X[5:], y[5:])]
    result = loss_slice_2d(model, nn.functional.mse_loss, batches, alphas=alphas, betas=alphas, random_state=0)
    theta, D = flatten_params(model), torch.from_numpy(result.directions)
    slow = [[sum(len(Xb) * _loss_at(model, nn.functional.mse_loss, Xb, yb, theta + a * D[0] + b * D[1])
                 for Xb, yb in batches) / 12 for b in alphas] for a in alphas]
    np.testing.assert_allclose(result.values["loss"], slow, rtol=0, atol=1e-13)
    assert model.training and all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_interpolation_ends_at_both_solutions(problem):
    other = copy.deepcopy(problem.model)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.5)
    result = loss_interpolation(problem.model, other, problem.loss_fn, (problem.X, problem.y),
                                alphas=[0.0, 0.5, 1.0])
    with torch.no_grad():
        ends = [problem.loss_fn(m(problem.X), problem.y).item() for m in (problem.model, other)]
    np.testing.assert_allclose(result.values["loss"][[0, 2]], ends, rtol=0, atol=1e-13)
    assert result.kind == "interpolation"


def test_curvature_map_equals_dense_eigenvalues(problem):
    alphas = np.array([-0.5, 0.0, 0.5])
    result = curvature_map_2d(problem.model, problem.loss_fn, (problem.X, problem.y), alphas=alphas, betas=alphas,
                              random_state=0)
    theta, D = flatten_params(problem.model), torch.from_numpy(result.directions)
    for i, a in enumerate(alphas):
        for j, b in enumerate(alphas):
            op = HessianOperator(problem.model, problem.loss_fn, (problem.X, problem.y), at=theta + a * D[0] + b * D[1])
            exact = np.linalg.eigvalsh(op.to_dense().numpy())
            assert result.values["lambda_min"][i, j] == pytest.approx(exact[0], abs=1e-8)
            assert result.values["lambda_max"][i, j] == pytest.approx(exact[-1], abs=1e-8)


def test_plot_slice_writes_png_and_json(problem, tmp_path):
    one = loss_slice_1d(problem.model, problem.loss_fn, (problem.X, problem.y), alphas=np.linspace(-1, 1, 5))
    two = loss_slice_2d(problem.model, problem.loss_fn, (problem.X, problem.y), alphas=np.linspace(-1, 1, 4),
                        betas=np.linspace(-1, 1, 3), verbose=1)
    for name, result in (("one", one), ("two", two)):
        png, numbers = plot_slice(result, tmp_path / name)
        assert png.read_bytes().startswith(b"\x89PNG") and numbers == tmp_path / f"{name}.json"
        saved = json.loads(numbers.read_text())
        np.testing.assert_array_equal(saved["values"]["loss"], result.values["loss"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.json", "one.png", "two.json", "two.png"]


def test_bad_slices_are_refused(problem):
    data = (problem.X, problem.y)
    with pytest.raises(ValueError, match="direction"):
        loss_slice_1d(problem.model, problem.loss_fn, data, direction=np.zeros(5))
    with pytest.raises(ValueError, match="expected 2 direction"):
        loss_slice_2d(problem.model, problem.loss_fn, data, directions=np.zeros((3, 26)))
    with pytest.raises(ValueError, match="alphas"):
        loss_slice_1d(problem.model, problem.loss_fn, data, alphas=[])
    with pytest.raises(ValueError, match="NaN"):
        loss_slice_1d(problem.model, problem.loss_fn, data, direction=np.full(26, np.nan))
