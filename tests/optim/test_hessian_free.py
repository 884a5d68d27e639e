"""HessianFree (Martens 2010): exact on least squares, Martens' CG rule, LM damping, CG state across state_dict."""

import copy
import math

import pytest
import torch
from torch import nn

from nnlift.landscape import GaussNewtonOperator, HessianOperator, flatten_params
from nnlift.optim.hessian_free import HessianFree, cg_backtrack, conjugate_gradient, martens_should_stop


class Scalar(nn.Module):
    """A one-parameter model whose 'output' is f(θ); with `mean_loss` the objective is f itself."""

    def __init__(self, f, theta: float):
        super().__init__()
        self.f, self.theta = f, nn.Parameter(torch.tensor([theta], dtype=torch.float64))

    def forward(self, X):
        return self.f(self.theta).expand(X.shape[0])


def mean_loss(out, target):
    return out.mean()


DUMMY = (torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))


@pytest.mark.parametrize("curvature", ["gauss_newton", "hessian"])
def test_one_step_solves_least_squares(curvature):
    g = torch.Generator().manual_seed(3)
    X, y = torch.randn(40, 6, generator=g, dtype=torch.float64), torch.randn(40, 2, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    model = nn.Linear(6, 2).double()
    loss_fn = nn.functional.mse_loss
    G = GaussNewtonOperator(model, loss_fn, (X, y)).to_dense()
    torch.testing.assert_close(G, HessianOperator(model, loss_fn, (X, y)).to_dense(), rtol=0, atol=1e-12)

    opt = HessianFree(model, loss_fn, damping=1e-12, curvature=curvature)
    before = flatten_params(model)
    opt.step(lambda: (X, y))
    solution = torch.linalg.lstsq(torch.cat([X, torch.ones(40, 1, dtype=torch.float64)], dim=1), y).solution
    torch.testing.assert_close(model.weight.detach(), solution[:6].T, rtol=0, atol=1e-9)
    torch.testing.assert_close(model.bias.detach(), solution[6], rtol=0, atol=1e-9)
    state = opt.global_state
    assert state["cg_iterations"] <= 8  # G = diag(B, B), B 7x7: CG needs 7 iterations in exact arithmetic
    assert state["step_size"] == 1.0 and state["rho"] == pytest.approx(1.0, abs=1e-6)
    assert state["damping"] == pytest.approx(1e-12 * 2 / 3)
    torch.testing.assert_close(state["warm_start"], flatten_params(model) - before, rtol=0, atol=1e-12)


def test_cg_starts_from_the_decayed_last_solution():
    g = torch.Generator().manual_seed(4)
    X, y = torch.randn(40, 6, generator=g, dtype=torch.float64), torch.randn(40, 2, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    model = nn.Linear(6, 2).double()
    opt = HessianFree(model, nn.functional.mse_loss, max_cg_iter=2, warm_start_decay=0.5)
    opt.step(lambda: (X, y))
    last, lam = opt.global_state["warm_start"], opt.global_state["damping"]
    op = GaussNewtonOperator(model, nn.functional.mse_loss, (X, y))
    expected = conjugate_gradient(lambda v: op @ v + lam * v, -op.objective.gradient(), 0.5 * last, max_iter=2)
    opt.step(lambda: (X, y))
    torch.testing.assert_close(opt.global_state["warm_start"], expected.x, rtol=0, atol=1e-12)
    assert opt.global_state["n_products"] == 2 + 3  # the warm start's residual costs a product


def test_martens_rule_by_hand():
    eps, k = 5e-4, 10
    # i = 20, k = 10: stop iff (φ_20 − φ_10)/φ_20 < 10ε = 5e-3, with φ_20 = −1: iff φ_10 < −0.995
    head = [0.0] + [-0.5] * 9
    assert martens_should_stop(head + [-0.9951] + [-0.999] * 9 + [-1.0], eps)
    assert not martens_should_stop(head + [-0.9949] + [-0.999] * 9 + [-1.0], eps)
    # i <= k never stops, even with no progress at all
    assert not martens_should_stop([0.0] + [-1.0] * k, eps)
    assert martens_should_stop([0.0] + [-1.0] * (k + 1), eps)
    # φ_i >= 0 never stops
    assert not martens_should_stop([0.0] * 30, eps)
    # k grows with i: the tail that stops at i = 20 (0.4% progress over the last 10 < 10ε) does not stop at i = 200,
    # where k = 20 and the progress over the last 20 iterations, 1.5%, is above 20ε = 1%
    tail = [-0.996] + [-0.998] * 9 + [-1.0]
    assert martens_should_stop([-0.9] * 10 + tail, eps)
    assert not martens_should_stop([-0.9] * 180 + [-0.985] + [-0.99] * 9 + tail, eps)
    assert martens_should_stop([-0.9] * 180 + [-0.991] + [-0.995] * 19 + [-1.0], eps)


def test_cg_stops_where_the_rule_first_holds():
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(300, 300, generator=g, dtype=torch.float64))
    A = Q @ torch.diag(torch.logspace(0, 4, 300, dtype=torch.float64)) @ Q.T
    b = torch.randn(300, generator=g, dtype=torch.float64)
    cg = conjugate_gradient(lambda v: A @ v, b, max_iter=300)
    assert cg.reason == "progress" and 11 <= cg.n_iter < 300 and cg.n_products == cg.n_iter
    assert not any(martens_should_stop(cg.phi[:i + 1]) for i in range(cg.n_iter))
    for i, x, phi in cg.iterates:
        assert phi == pytest.approx(float(0.5 * x @ A @ x - b @ x), rel=1e-9, abs=1e-12)
        assert phi == cg.phi[i]
    expected = sorted({math.ceil(1.3 ** j) for j in range(60)} & set(range(1, cg.n_iter + 1)) | {cg.n_iter})
    assert [i for i, _, _ in cg.iterates] == expected
    # a warm start at the solution costs one product (its residual) and no iteration
    exact = conjugate_gradient(lambda v: A @ v, b, torch.linalg.solve(A, b), tol=1e-8)
    assert (exact.reason, exact.n_iter, exact.n_products) == ("residual", 0, 1)
    # stopped near the minimum −½ bᵀA⁻¹b of φ: within 1%
    assert cg.phi[-1] / float(-0.5 * b @ torch.linalg.solve(A, b)) > 0.99


def test_cg_backtracking_goes_back_while_the_loss_falls():
    iterates = [(i, torch.tensor([float(i)]), -float(i)) for i in (1, 2, 3, 5, 7)]
    losses = {1.0: 1.0, 2.0: 3.0, 3.0: 2.0, 5.0: 4.0, 7.0: 6.0}
    evaluated = []

    def loss_at(x):
        evaluated.append(x.item())
        return losses[x.item()]

    (i, x, phi), value = cg_backtrack(iterates, loss_at)
    assert (i, value, evaluated) == (3, 2.0, [7.0, 5.0, 3.0, 2.0])  # stops at the first rise, not at the minimum
    assert cg_backtrack(iterates[:1], loss_at)[0][0] == 1


@pytest.mark.parametrize(("f", "theta", "damping", "factor"), [
    (lambda t: t ** 4, 1.0, 0.5, 2 / 3),                   # ρ ≈ 1.18 > 3/4: λ down
    (lambda t: torch.log1p(t ** 2), 0.5, 0.01, 1.0),       # ρ ≈ 0.35: λ stays
    (lambda t: torch.log1p(t ** 2), 0.8, 0.01, 1.5),       # the step overshoots, ρ < 0: λ up
])
def test_damping_follows_the_reduction_ratio(f, theta, damping, factor):
    model = Scalar(f, theta)
    opt = HessianFree(model, mean_loss, curvature="hessian", damping=damping)
    opt.step(lambda: DUMMY)
    x = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
    (gradient,) = torch.autograd.grad(f(x), x, create_graph=True)
    (hessian,) = torch.autograd.grad(gradient, x)
    p = -gradient.item() / (hessian.item() + damping)
    rho = (f(torch.tensor(theta + p, dtype=torch.float64)).item() - f(x).item()) / (
        gradient.item() * p + 0.5 * hessian.item() * p ** 2)
    state = opt.global_state
    assert state["rho"] == pytest.approx(rho, rel=1e-9)
    assert state["damping"] == pytest.approx(damping * factor, rel=1e-12)
    assert (rho < 0.25) == (factor > 1) and (rho > 0.75) == (factor < 1)


def test_hessian_free_beats_gradient_descent_on_a_small_mlp(regression_data, mlp):
    X, y = regression_data()
    loss_fn = nn.functional.mse_loss
    model = mlp()
    opt = HessianFree(model, loss_fn, max_cg_iter=50)
    for _ in range(12):
        opt.step(lambda: (X, y))
    hf_loss = loss_fn(model(X), y).item()
    budget = 12 + opt.global_state["n_products"]  # a gradient per step and one gradient-sized pass per product

    best_gd = math.inf
    for lr in (0.1, 0.3, 1.0):
        baseline = mlp()
        sgd = torch.optim.SGD(baseline.parameters(), lr=lr)
        for _ in range(budget):
            sgd.zero_grad()
            loss_fn(baseline(X), y).backward()
            sgd.step()
        value = loss_fn(baseline(X), y).item()
        best_gd = min(best_gd, value if math.isfinite(value) else math.inf)
    assert hf_loss < 1e-3 and best_gd > 1e-3
    assert hf_loss < best_gd / 5


def test_state_dict_round_trip_gives_the_same_next_step(regression_data, mlp):
    X, y = regression_data(n=100)
    model = mlp()
    opt = HessianFree(model, nn.functional.mse_loss, max_cg_iter=30)
    for _ in range(3):
        opt.step(lambda: (X, y))
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    opt.step(lambda: (X, y))

    def next_step(load_optimizer_state: bool):
        twin = mlp(seed=7)
        twin.load_state_dict(saved_model)
        twin_opt = HessianFree(twin, nn.functional.mse_loss, max_cg_iter=30)
        if load_optimizer_state:
            twin_opt.load_state_dict(saved_opt)
        twin_opt.step(lambda: (X, y))
        return [p.detach() for p in twin.parameters()], twin_opt.global_state

    params, state = next_step(True)
    assert all(torch.equal(a, b.detach()) for a, b in zip(params, model.parameters(), strict=True))
    assert state["damping"] == opt.global_state["damping"] and state["step"] == 4
    assert torch.equal(state["warm_start"], opt.global_state["warm_start"])
    fresh, _ = next_step(False)  # without λ and the warm start the step differs
    assert max((a - b.detach()).abs().max().item() for a, b in zip(fresh, model.parameters(), strict=True)) > 1e-4
