"""Activation registry (Gaussian derivative expectations against closed forms) and planted teachers."""

import numpy as np
import pytest
import torch
from scipy import stats

from nnlift.activations import available_activations, gaussian_derivative_expectation, get_activation
from nnlift.datasets import make_teacher


@pytest.mark.parametrize(("scale", "bias"), [(1.0, 0.0), (2.0, 0.5), (0.7, -1.2)])
def test_relu_expectations_match_closed_forms(scale, bias):
    t = bias / scale
    assert gaussian_derivative_expectation("relu", 0, scale, bias) == pytest.approx(
        scale * stats.norm.pdf(t) + bias * stats.norm.cdf(t), abs=1e-9)
    assert gaussian_derivative_expectation("relu", 1, scale, bias) == pytest.approx(stats.norm.cdf(t), abs=1e-9)
    assert gaussian_derivative_expectation("relu", 2, scale, bias) == pytest.approx(
        stats.norm.pdf(t) / scale, abs=1e-9)
    # relu''' = delta': E[delta'(s z + b)] = -(1 / s) d/du phi((u - b) / s) at u = 0 = -(t / s^2) phi(t)
    assert gaussian_derivative_expectation("relu", 3, scale, bias) == pytest.approx(
        -t * stats.norm.pdf(t) / scale**2, abs=1e-8)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "softplus", "gelu"])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_smooth_expectations_match_autograd_derivatives(name, order):
    """E[sigma^(m)(s z + b)] by Gauss-Hermite quadrature of the autograd derivative."""
    act = get_activation(name)
    nodes, weights = np.polynomial.hermite_e.hermegauss(180)
    u = torch.tensor(1.3 * nodes + 0.4, requires_grad=True)
    value = act.torch(u)
    for _ in range(order):
        (value,) = torch.autograd.grad(value.sum(), u, create_graph=True)
    expected = float((weights * value.detach().numpy()).sum() / np.sqrt(2 * np.pi))
    assert gaussian_derivative_expectation(name, order, 1.3, 0.4) == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize("name", available_activations())
def test_numpy_and_torch_values_and_gradients_agree(name):
    act = get_activation(name)
    u = np.linspace(-3, 3, 13) + 0.05
    ut = torch.tensor(u, requires_grad=True)
    np.testing.assert_allclose(act.numpy(u), act.torch(ut).detach().numpy(), atol=1e-12)
    (grad,) = torch.autograd.grad(act.torch(ut).sum(), ut)
    np.testing.assert_allclose(act.numpy_grad(u), grad.numpy(), atol=1e-12)


def test_unknown_activation_lists_the_choices():
    with pytest.raises(ValueError, match="choose one of"):
        get_activation("swish")


def test_teacher_is_seeded_and_matches_its_formula():
    a = make_teacher(500, 7, 3, "tanh", noise=0.1, weight_scale=2.0, random_state=5, n_test=100)
    b = make_teacher(500, 7, 3, "tanh", noise=0.1, weight_scale=2.0, random_state=5, n_test=100)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_allclose(np.linalg.norm(a.first_layer, axis=0), 2.0)
    assert np.all(np.abs(a.bias) <= 1) and np.all((np.abs(a.coef) >= 0.5) & (np.abs(a.coef) <= 1.5))
    residual = a.y - a.predict(a.X)
    assert residual.std() == pytest.approx(0.1, rel=0.1)
    assert a.X_test.shape == (100, 7) and a.noise_var == pytest.approx(0.01)
    orthogonal = make_teacher(10, 6, 4, orthogonal=True, random_state=0).first_layer
    np.testing.assert_allclose(orthogonal.T @ orthogonal, np.eye(4), atol=1e-12)
    with pytest.raises(ValueError, match="k <= d"):
        make_teacher(10, 3, 4, orthogonal=True)
