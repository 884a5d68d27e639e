"""The trajectory plane against a gradient-descent path known in closed form and scikit-learn's PCA; the surface and
the curvature along the path against direct evaluations and dense Hessians."""

import copy
import json

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from torch import nn

from nnlift.landscape import flatten_params
from nnlift.landscape.trajectory import plot_trajectory, stack_snapshots, trajectory_plane, trajectory_surface

STEP = 0.3


def _quadratic(error: list[float]):
    """Least squares with orthogonal feature columns: L(θ) = mean((Xθ − y)²) has the Hessian A = (2/n) XᵀX =
    diag(s²/4), so gradient descent from θ* + e moves each coordinate as θ*_i + (1 − STEP·a_i)^t e_i."""
    Q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((8, 4)))
    s = np.array([2.0, 1.0, 3.0, 1.5])
    X = torch.from_numpy(Q * s)
    optimum = np.array([0.5, -1.0, 2.0, 0.25])
    model = nn.Linear(4, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(optimum + np.array(error))[None])
    factors = 1 - STEP * s**2 / 4
    return model, X, X @ torch.from_numpy(optimum)[:, None], optimum, factors


def _gradient_descent(model, loss_fn, X, y, steps: int, lr: float) -> list[torch.Tensor]:
    """Snapshots θ_0, …, θ_steps of full-batch gradient descent on a copy of the model."""
    model = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    snapshots = [flatten_params(model)]
    for _ in range(steps):
        optimizer.zero_grad()
        loss_fn(model(X), y).backward()
        optimizer.step()
        snapshots.append(flatten_params(model))
    return snapshots


def _loss_at(model, loss_fn, X, y, theta) -> float:
    other = copy.deepcopy(model)
    torch.nn.utils.vector_to_parameters(torch.as_tensor(theta), other.parameters())
    with torch.no_grad():
        return loss_fn(other(X), y).item()


def test_gd_path_of_a_quadratic_lies_in_the_plane():
    error = np.array([1.0, -2.0, 0.0, 0.0])
    model, X, y, optimum, factors = _quadratic(error)
    snapshots = _gradient_descent(model, nn.functional.mse_loss, X, y, steps=12, lr=STEP)
    closed_form = np.array([optimum + factors**t * error for t in range(13)])
    np.testing.assert_allclose(np.stack(snapshots), closed_form, rtol=0, atol=1e-13)

    plane = trajectory_plane(snapshots)
    c = closed_form[:, :2] - closed_form[-1, :2]
    expected_ratios = np.linalg.eigvalsh(c.T @ c)[::-1] / np.trace(c.T @ c)
    np.testing.assert_allclose(plane.explained_variance_ratio, expected_ratios, rtol=0, atol=1e-12)
    assert plane.explained_variance_ratio.sum() == pytest.approx(1, abs=1e-10)
    np.testing.assert_allclose(plane.directions[:, 2:], 0, atol=1e-12)
    np.testing.assert_allclose(plane.directions @ plane.directions.T, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(plane.origin + plane.coordinates @ plane.directions, closed_form, rtol=0, atol=1e-10)
    np.testing.assert_allclose(plane.distances, 0, atol=1e-10)
    np.testing.assert_allclose(plane.coordinates[-1], 0, atol=0)
    assert np.all(plane.coordinates[0] >= 0)


def test_a_path_in_three_dimensions_does_not_fit_the_plane():
    model, X, y, _, _ = _quadratic([1.0, -2.0, 1.0, 0.0])
    plane = trajectory_plane(_gradient_descent(model, nn.functional.mse_loss, X, y, steps=12, lr=STEP))
    assert plane.explained_variance_ratio.sum() < 1 - 1e-4
    assert plane.distances.max() > 1e-3


def test_centred_plane_is_scikit_learns_pca():
    thetas = np.random.default_rng(1).standard_normal((6, 10))
    plane = trajectory_plane(thetas, center=True)
    pca = PCA(n_components=2, svd_solver="full").fit(thetas - thetas[-1])
    np.testing.assert_allclose(plane.explained_variance_ratio, pca.explained_variance_ratio_, rtol=1e-12)
    np.testing.assert_allclose(np.abs(plane.directions), np.abs(pca.components_), rtol=0, atol=1e-12)
    np.testing.assert_allclose(plane.coordinates, (thetas - thetas[-1]) @ plane.directions.T, atol=1e-12)
    assert plane.centered


def test_snapshots_as_vectors_modules_and_state_dicts_agree(problem):
    snapshots = _gradient_descent(problem.model, problem.loss_fn, problem.X, problem.y, steps=3, lr=0.5)
    modules = []
    for theta in snapshots:
        module = copy.deepcopy(problem.model)
        torch.nn.utils.vector_to_parameters(theta, module.parameters())
        modules.append(module)
    expected = torch.stack(snapshots).numpy()
    np.testing.assert_array_equal(stack_snapshots(modules), expected)
    np.testing.assert_array_equal(stack_snapshots([m.state_dict() for m in modules], model=problem.model), expected)
    np.testing.assert_array_equal(stack_snapshots(torch.stack(snapshots)), expected)
    np.testing.assert_array_equal(stack_snapshots([m.state_dict() for m in modules], model=problem.model,
                                                  parameters="2.weight"), expected[:, 16:24])


def test_surface_and_curvature_equal_direct_evaluations(problem, dense):
    snapshots = _gradient_descent(problem.model, problem.loss_fn, problem.X, problem.y, steps=4, lr=0.5)
    state = copy.deepcopy(problem.model.state_dict())
    result = trajectory_surface(problem.model, problem.loss_fn, (problem.X, problem.y), snapshots, grid=4,
                                betas=[-0.3, 0.0, 0.2], curvature=True, tol=0, chunk_size=5)
    plane = result.plane
    assert result.loss.shape == (4, 3) and result.alphas[0] < plane.coordinates[:, 0].min()
    for i, a in enumerate(result.alphas):
        for j, b in enumerate(result.betas):
            theta = plane.origin + a * plane.directions[0] + b * plane.directions[1]
            assert result.loss[i, j] == pytest.approx(_loss_at(problem.model, problem.loss_fn, problem.X, problem.y,
                                                               theta), abs=1e-13)
    for i, theta in enumerate(snapshots):
        assert result.path_loss[i] == pytest.approx(_loss_at(problem.model, problem.loss_fn, problem.X, problem.y,
                                                             theta), abs=1e-13)
        other = copy.deepcopy(problem.model)
        torch.nn.utils.vector_to_parameters(theta, other.parameters())
        exact = np.linalg.eigvalsh(dense.hessian(other, problem.loss_fn, problem.X, problem.y).numpy())
        assert result.lambda_min[i] == pytest.approx(exact[0], abs=1e-8)
        assert result.lambda_max[i] == pytest.approx(exact[-1], abs=1e-8)
    assert all(torch.equal(value, state[key]) for key, value in problem.model.state_dict().items())


def test_plot_trajectory_writes_png_and_json(problem, tmp_path):
    snapshots = _gradient_descent(problem.model, problem.loss_fn, problem.X, problem.y, steps=3, lr=0.5)
    data = (problem.X, problem.y)
    for name, curvature in (("plain", False), ("curved", True)):
        result = trajectory_surface(problem.model, problem.loss_fn, data, snapshots, grid=5, curvature=curvature,
                                    verbose=1)
        png, numbers = plot_trajectory(result, tmp_path / name)
        assert png.read_bytes().startswith(b"\x89PNG") and numbers == tmp_path / f"{name}.json"
        saved = json.loads(numbers.read_text())
        np.testing.assert_array_equal(saved["loss"], result.loss)
        np.testing.assert_array_equal(saved["plane"]["coordinates"], result.plane.coordinates)
        assert (saved["lambda_min"] is None) == (not curvature)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curved.json", "curved.png", "plain.json", "plain.png"]


def test_bad_snapshots_are_refused(problem):
    theta = flatten_params(problem.model)
    with pytest.raises(ValueError, match="at least 2 snapshots"):
        trajectory_plane([theta])
    with pytest.raises(ValueError, match="do not move"):
        trajectory_plane([theta, theta.clone()])
    with pytest.raises(ValueError, match="length"):
        trajectory_plane([theta, theta[:-1]])
    with pytest.raises(ValueError, match="length of the selected parameters \\(26\\)"):
        stack_snapshots([theta[:-1], theta[:-1]], model=problem.model)
    with pytest.raises(ValueError, match="NaN"):
        trajectory_plane([theta, torch.full_like(theta, torch.nan)])
    with pytest.raises(ValueError, match="model="):
        stack_snapshots([problem.model.state_dict()] * 2)
    with pytest.raises(ValueError, match="lacks"):
        stack_snapshots([{"0.weight": torch.zeros(4, 3)}], model=problem.model)
    with pytest.raises(TypeError, match="list of flat vectors"):
        stack_snapshots(problem.model.state_dict())
    with pytest.raises(TypeError, match="snapshot 1"):
        stack_snapshots([theta, "theta"])
    with pytest.raises(ValueError, match="no snapshots"):
        stack_snapshots([])
    with pytest.raises(ValueError, match="grid"):
        trajectory_surface(problem.model, problem.loss_fn, (problem.X, problem.y), [theta, 2 * theta], grid=1)
    with pytest.raises(ValueError, match="alphas"):
        trajectory_surface(problem.model, problem.loss_fn, (problem.X, problem.y), [theta, 2 * theta], alphas=[])
