"""Parallel homogeneous networks and the regularisers: degrees, balancing, AM-GM surrogates."""

import numpy as np
import pytest
import torch

from nnlift.homogeneous import ParallelNetwork, objective, penalty_terms, ray_profile


@pytest.mark.parametrize("widths, activation", [([5, 1, 3], "relu"), ([5, 4, 4, 2], "relu"), ([6, 1, 4], "linear")])
def test_subnetworks_are_positively_homogeneous_of_degree_depth(widths, activation):
    net = ParallelNetwork.random(3, widths, activation, random_state=1)
    X = None if activation == "linear" else torch.randn(7, widths[0], dtype=torch.float64)
    alpha = 1.7
    assert net.degree == len(widths) - 1
    torch.testing.assert_close(net.scaled(alpha)(X), alpha ** net.degree * net(X))
    torch.testing.assert_close(net.scaled(alpha).theta(), alpha ** net.degree * net.theta())


def test_constructors_match_the_formulas():
    rng = np.random.default_rng(0)
    U, V, X = rng.standard_normal((4, 3)), rng.standard_normal((2, 3)), rng.standard_normal((6, 4))
    relu = ParallelNetwork.one_hidden_relu(U, V)
    np.testing.assert_allclose(relu(X).numpy(), np.maximum(X @ U, 0) @ V.T)
    mf = ParallelNetwork.matrix_factorization(U, V)
    np.testing.assert_allclose(mf().numpy(), U @ V.T)
    np.testing.assert_allclose(mf.theta().numpy(), np.linalg.norm(U, axis=0) * np.linalg.norm(V, axis=0))
    for got, want in zip(relu.factors(), (U, V), strict=True):
        np.testing.assert_allclose(got, want)


def test_balancing_keeps_output_and_theta_and_makes_the_surrogate_exact():
    net = ParallelNetwork.random(4, [3, 2, 2, 1], random_state=2)
    X = torch.randn(9, 3, dtype=torch.float64)
    balanced = net.balanced()
    torch.testing.assert_close(balanced(X), net(X))
    torch.testing.assert_close(balanced.theta(), net.theta())
    # AM-GM: (1/p) Σ ||W_l||^p >= Π ||W_l||, equality when balanced; weight decay >= (p/2) θ^{2/p}
    assert torch.all(penalty_terms(net, smooth=True) >= net.theta())
    torch.testing.assert_close(penalty_terms(balanced, smooth=True), balanced.theta())
    torch.testing.assert_close(penalty_terms(balanced, "weight_decay"), 1.5 * balanced.theta() ** (2 / 3))


def test_weight_decay_makes_zero_a_strict_local_minimum_of_a_degree_3_net_but_matched_does_not():
    net = ParallelNetwork.random(2, [3, 3, 3, 1], random_state=0)
    X = torch.randn(20, 3, dtype=torch.float64)
    Y = net(X) * 3                                    # a target the direction fits well
    small = np.geomspace(1e-5, 1e-3, 10)              # f(tW) - f(0) = -t³<Y, Φ> + λ t² WD(W) + O(t⁶)
    assert np.all(ray_profile(net, X, Y, 0.1, "weight_decay", small) > 0)
    assert ray_profile(net, X, Y, 0.1, "weight_decay", [1.0])[0] < 0    # ...though W beats 0: a barrier
    assert np.all(ray_profile(net, X, Y, 0.1, "matched", small) < 0)
    assert objective(net.scaled(0.0), X, Y, 0.1) == pytest.approx(0.5 * float(Y.pow(2).sum()))
