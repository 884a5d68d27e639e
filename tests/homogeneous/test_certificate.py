"""The certificate: true at the convex optimum, false at non-optimal critical points, the zero-subnetwork
theorem, and `certify` on a user's torch model."""

import numpy as np
import pytest
import torch
from torch import nn

from nnlift.homogeneous import (
    ParallelNetwork,
    certify,
    local_descent,
    objective,
    perturbation_test,
    relu_convex_optimum,
    relu_polar_enumerated,
    unit_profile,
)


def _svt_factors(Y, lam, keep, width):
    """Columns i < keep: sqrt(σ_i - λ) a_i, sqrt(σ_i - λ) b_i (the shrunk SVD); the other columns zero."""
    A, sigma, Bt = np.linalg.svd(Y, full_matrices=False)
    scale = np.sqrt(np.maximum(sigma - lam, 0))
    U, V = np.zeros((Y.shape[0], width)), np.zeros((Y.shape[1], width))
    U[:, :keep], V[:, :keep] = A[:, :keep] * scale[:keep], Bt[:keep].T * scale[:keep]
    return U, V


@pytest.fixture
def instance():
    Y = np.random.default_rng(3).standard_normal((8, 6))
    sigma = np.linalg.svd(Y, compute_uv=False)
    lam = 0.5 * (sigma[2] + sigma[3])                # the convex optimum has rank 3
    optimum = 0.5 * np.sum(np.minimum(sigma, lam) ** 2) + lam * np.sum(np.maximum(sigma - lam, 0))
    return Y, lam, optimum, sigma


def test_certificate_holds_at_the_convex_optimum(instance):
    Y, lam, optimum, _ = instance
    cert = certify(_svt_factors(Y, lam, 3, 3), None, Y, lam, tol=1e-9)
    assert cert.certified and cert.polar_exact
    assert cert.polar == pytest.approx(1.0, abs=1e-12)
    assert cert.objective == pytest.approx(optimum, rel=1e-12)
    assert cert.suboptimality_bound == pytest.approx(0.0, abs=1e-9)
    assert cert.message.startswith("Certified")


def test_certificate_fails_at_a_non_optimal_local_minimum(instance):
    Y, lam, optimum, sigma = instance
    # two columns cannot reach the rank-3 optimum: local descent ends at a local minimum of the r = 2 problem
    descent = local_descent(ParallelNetwork.random(2, [8, 1, 6], "linear", random_state=0), None, Y, lam)
    cert = certify(descent.network, None, Y, lam)
    assert descent.grad_max < 1e-8 and abs(cert.stationarity_gap) < 1e-8       # a critical point...
    assert cert.polar == pytest.approx(sigma[2] / lam, rel=1e-8)               # ...with polar σ_3/λ > 1
    assert not cert.certified and cert.message.startswith("Not certified")
    gap = descent.objective - optimum
    assert cert.decrease == pytest.approx(0.5 * (sigma[2] - lam) ** 2, rel=1e-8)   # exact line search
    assert cert.decrease <= gap + 1e-12 and gap <= cert.suboptimality_bound + 1e-12


def test_zero_subnetwork_theorem_on_constructed_points(instance):
    Y, lam, optimum, _ = instance
    # a local minimum with two zero columns: global (Haeffele & Vidal 2017, Thm. 1)
    minimum = ParallelNetwork.matrix_factorization(*_svt_factors(Y, lam, 3, 5))
    cert = certify(minimum, None, Y, lam, tol=1e-9)
    assert cert.zero_subnetworks == (3, 4) and cert.certified
    assert perturbation_test(minimum, None, Y, lam, radius=1e-2) >= 0
    assert cert.objective == pytest.approx(optimum, rel=1e-12)
    # a critical point with a zero column that is not a local minimum: filling the column along the polar's
    # maximiser descends, so the theorem does not apply, and the point is not global
    saddle = ParallelNetwork.matrix_factorization(*_svt_factors(Y, lam, 2, 3))
    cert = certify(saddle, None, Y, lam)
    assert cert.zero_subnetworks == (2,) and not cert.certified and "not a local minimum" in cert.message
    along = unit_profile(saddle.select([0, 1]), None, Y, lam, "matched", cert.direction, [1e-2, 1e-1])
    assert np.all(along < 0) and cert.objective > optimum


def test_certify_a_torch_relu_model_with_a_first_layer_bias():
    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(-2, 2, 25))
    y = np.abs(x) - 0.5 * np.maximum(x - 0.7, 0) + 0.1 * rng.standard_normal(25)
    lam = 0.2
    value, net = relu_convex_optimum(np.c_[x, np.ones(25)], y, lam)
    U, V = net.factors()
    model = nn.Sequential(nn.Linear(1, U.shape[1]), nn.ReLU(), nn.Linear(U.shape[1], 1, bias=False)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(U[:1].T))
        model[0].bias.copy_(torch.from_numpy(U[1]))
        model[2].weight.copy_(torch.from_numpy(V))
    cert = certify(model, x[:, None], y, lam, tol=1e-4)
    assert cert.certified and cert.polar_exact and "bias folded" in cert.kind
    assert cert.objective == pytest.approx(value, rel=1e-6)
    with torch.no_grad():
        model[2].weight.mul_(0.5)                        # halve the output layer: no longer optimal
    worse = certify(model, x[:, None], y, lam)
    assert not worse.certified and worse.polar > 1 and worse.decrease > 0
    model[2].bias = nn.Parameter(torch.ones(1, dtype=torch.float64))
    with pytest.raises(ValueError, match="output bias"):
        certify(model, x[:, None], y, lam)


def test_certify_weight_arrays_of_a_one_hidden_layer_net_uses_the_heuristic():
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((30, 4)), rng.standard_normal((30, 2))
    U, V = rng.standard_normal((4, 3)), rng.standard_normal((2, 3))
    cert = certify((U, V), X, Y, 1.0, n_restarts=16, n_steps=100)
    assert not cert.polar_exact and not cert.certified
    assert cert.polar_upper > cert.polar > 1 and "not a global minimum" in cert.message
    assert cert.kind == "one-hidden-layer relu network"


@pytest.mark.parametrize("scale", [0.0, 1e-200])
def test_certify_the_zero_factorization_exactly_when_lam_exceeds_sigma_1(scale):
    Y = np.random.default_rng(6).standard_normal((8, 6))
    sigma_1 = np.linalg.norm(Y, 2)
    zero = (scale * np.ones((8, 2)), scale * np.ones((6, 2)))
    above = certify(zero, None, Y, 1.001 * sigma_1, tol=1e-6)
    assert above.certified and above.polar == pytest.approx(1 / 1.001, rel=1e-12)
    assert above.suboptimality_bound == pytest.approx(0.0, abs=1e-12)
    assert above.objective == pytest.approx(0.5 * np.sum(Y ** 2), rel=1e-12)   # the convex optimum at λ > σ₁
    below = certify(zero, None, Y, 0.999 * sigma_1, tol=1e-6)
    assert not below.certified and below.polar == pytest.approx(1 / 0.999, rel=1e-12)
    assert below.decrease == pytest.approx(0.5 * (0.001 * sigma_1) ** 2, rel=1e-9)    # ½ (σ₁ - λ)²


@pytest.mark.parametrize("scale", [0.0, 1e-200])
def test_certify_the_zero_relu_network_at_its_exact_polar(scale):
    rng = np.random.default_rng(8)
    X, y = rng.standard_normal((20, 3)), rng.standard_normal(20)
    omega = relu_polar_enumerated(X, y)[0]                # Ω°(y): the zero network is optimal iff λ >= Ω°(y)
    zero = (scale * np.ones((3, 2)), scale * np.ones((1, 2)))
    above = certify(zero, X, y, 1.001 * omega)
    assert above.certified and above.polar_exact and above.polar == pytest.approx(1 / 1.001, rel=1e-10)
    ascent = certify(zero, X, y, 1.001 * omega, polar_method="heuristic")
    assert not ascent.certified and ascent.polar <= above.polar * (1 + 1e-12) and "undecided" in ascent.message
    below = certify(zero, X, y, 0.999 * omega)
    assert not below.certified and below.polar == pytest.approx(1 / 0.999, rel=1e-10) and below.decrease > 0


def test_a_point_the_ascent_would_certify_is_refuted_by_the_exact_polar():
    rng = np.random.default_rng(29)          # the ascent's best direction is 0.14% below the exact polar here
    X, y = rng.standard_normal((12, 3)), rng.standard_normal(12)
    lam = relu_polar_enumerated(X, y)[0] * (1 - 7e-4)
    zero = (np.zeros((3, 1)), np.zeros((1, 1)))
    ascent = certify(zero, X, y, lam, polar_method="heuristic")
    assert ascent.polar < 1 and not ascent.certified           # "polar <= 1" from ascent alone: not a certificate
    exact = certify(zero, X, y, lam)
    assert exact.polar_exact and exact.polar > 1 + exact.tol and not exact.certified
    step = ParallelNetwork.one_hidden_relu(np.zeros((3, 1)), np.zeros((1, 1))).append(
        [(exact.step ** 0.5) * W for W in exact.direction])
    assert objective(step, X, y, lam) == pytest.approx(exact.objective - exact.decrease, rel=1e-12)
    assert exact.decrease > 0


@pytest.mark.parametrize("layers", [
    lambda: [nn.ReLU(), nn.Linear(3, 4), nn.Linear(4, 2, bias=False)],
    lambda: [nn.Linear(3, 4), nn.Linear(4, 2, bias=False), nn.ReLU()],
    lambda: [nn.Linear(3, 4), nn.ReLU(), nn.ReLU(), nn.Linear(4, 2, bias=False)]])
def test_a_module_in_another_layer_order_is_refused_not_certified_as_something_else(layers):
    X, Y = torch.randn(20, 3, dtype=torch.float64), torch.randn(20, 2, dtype=torch.float64)
    with pytest.raises(TypeError, match="in that order"):
        certify(nn.Sequential(*layers()).double(), X, Y, 0.1)


def test_activation_must_be_homogeneous_and_is_not_taken_beside_a_module():
    X, Y = torch.randn(20, 3, dtype=torch.float64), torch.randn(20, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="'linear' or 'relu'"):
        certify((torch.randn(3, 4, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)), X, Y, 0.1,
                activation="tanh")
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2, bias=False)).double()
    with pytest.raises(ValueError, match="read from the module"):
        certify(model, X, Y, 0.1, activation="relu")
