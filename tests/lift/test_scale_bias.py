"""Least-squares scale and bias with the true directions given."""

import numpy as np
import pytest

from nnlift.datasets import make_teacher
from nnlift.lift.first_layer import choose_order, required_samples
from nnlift.lift.scale_bias import fit_scale_bias


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_recovers_scale_bias_and_output_weights_up_to_the_activation_symmetry(activation):
    t = make_teacher(20_000, 6, 3, activation, noise=0.01, weight_scale=1.5, random_state=4)
    directions = t.first_layer / np.linalg.norm(t.first_layer, axis=0)
    fit = fit_scale_bias(t.X, t.y, directions, activation)
    if activation == "relu":  # positively homogeneous: (s, b, c) ~ (a s, a b, c / a) for a > 0
        assert np.all(fit.scale > 0)
        np.testing.assert_allclose(fit.bias / fit.scale, t.bias / 1.5, atol=2e-2)
        np.testing.assert_allclose(fit.coef * fit.scale, t.coef * 1.5, atol=3e-2)
    else:
        sign = np.sign(fit.scale)  # sigma(-u) = -sigma(u) (tanh) or 1 - sigma(u) (sigmoid)
        np.testing.assert_allclose(np.abs(fit.scale), 1.5, atol=2e-2)
        np.testing.assert_allclose(sign * fit.bias, t.bias, atol=2e-2)
        np.testing.assert_allclose(sign * fit.coef, t.coef, atol=2e-2)
    assert fit.r2 > 0.99


def test_choose_order_follows_the_gaussian_derivative_expectations():
    orders = [choose_order(a) for a in ("sigmoid", "tanh", "relu", "gelu", "softplus")]
    assert orders == [3, 3, (3, 4), (3, 4), (3, 4)]


def test_required_samples_inverts_the_standard_error():
    needed = required_samples(np.array([4.0, 1.0]), np.array([0.5, -0.1]), rel_stderr=0.1)
    # sqrt(4 / n) = 0.05 -> n = 1600; sqrt(1 / n) = 0.01 -> n = 10000
    np.testing.assert_array_equal(needed, [1600, 10000])
