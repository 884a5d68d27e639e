"""K-FAC (Martens & Grosse 2015): exact on least squares, the factored damped solve against a dense Kronecker solve,
the factors against per-example sums, Levenberg-Marquardt damping, training, state across state_dict."""

import copy
import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from nnlift.landscape import GaussNewtonOperator, flatten_params
from nnlift.optim.kfac import KFAC, damped_inverses, kronecker_factors

# curvlinops imports linear_operator, which calls the deprecated torch.jit.script at import
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


def least_squares_problem(outputs):
    g = torch.Generator().manual_seed(3)
    X = torch.randn(40, 6, generator=g, dtype=torch.float64)
    y = torch.randn(40, outputs, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    return X, y, nn.Linear(6, outputs).double()


def lstsq(X, y):
    return np.linalg.lstsq(np.c_[X.numpy(), np.ones(len(X))], y.numpy(), rcond=None)[0]


def tiny_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()


def test_one_step_solves_least_squares():
    # L = (1/(NC)) Σ_n ‖W̄ā_n − y_n‖² has the Hessian (2/(NC)) Σ_n ā_n ā_nᵀ ⊗ I_C = A ⊗ G with A = (1/N) Σ ā āᵀ
    # and G = (2/C) I_C, the exact (type-2) factor: K-FAC's block is the Hessian, and its step, Newton's, lands on
    # the least-squares solution. The factored damping perturbs it by O(γ) = O(√λ): λ = 1e-24.
    X, y, model = least_squares_problem(outputs=2)
    opt = KFAC(model, lr=1.0, momentum=0.0, damping=1e-24, fisher_type="type-2", adapt_damping=False)
    opt.step(lambda: (X, y))
    A, G = opt.global_state["factors"][""]
    Xbar = torch.cat([X, torch.ones(40, 1, dtype=torch.float64)], dim=1)
    torch.testing.assert_close(A, Xbar.T @ Xbar / 40, rtol=1e-12, atol=0)
    torch.testing.assert_close(G, torch.eye(2, dtype=torch.float64), rtol=0, atol=1e-12)  # 2/C = 1
    solution = lstsq(X, y)
    np.testing.assert_allclose(model.weight.detach().numpy(), solution[:6].T, rtol=0, atol=1e-9)
    np.testing.assert_allclose(model.bias.detach().numpy(), solution[6], rtol=0, atol=1e-9)


def test_sampled_fisher_needs_the_rescaled_step_to_be_exact():
    # with one output the sampled G = (4/N) Σ_n ε_n², ε_n ~ N(0, ½), is a random multiple of the exact 2: the step
    # lr = 1 misses by that factor, the step whose length minimises the exact quadratic model (lr=None, M&G §7)
    # is Newton's again
    X, y, model = least_squares_problem(outputs=1)
    solution = lstsq(X, y)[:, 0]
    errors = {}
    for lr in (1.0, None):
        twin = copy.deepcopy(model)
        opt = KFAC(twin, lr=lr, damping=1e-24, fisher_type="mc", adapt_damping=False)
        opt.step(lambda: (X, y))
        errors[lr] = np.abs(np.r_[twin.weight.detach().numpy()[0], twin.bias.detach().numpy()] - solution).max()
        G = float(opt.global_state["factors"][""][1])
    assert errors[None] < 1e-9 and errors[1.0] > 1e-2
    assert opt.global_state["lr"] == pytest.approx(G / 2, rel=1e-9)  # α = sampled G / exact G
    assert abs(G - 2) > 0.1


@pytest.mark.parametrize(("fisher_type", "variant"), [("mc", "full"), ("empirical", "full"), ("mc", "partial")])
def test_update_equals_the_dense_damped_kronecker_solve(fisher_type, variant):
    # "partial": the first layer has no bias (ā = a), the second a frozen weight (its block is G alone, A = [1])
    g = torch.Generator().manual_seed(1)
    X, y = torch.randn(10, 3, generator=g, dtype=torch.float64), torch.randn(10, 2, generator=g, dtype=torch.float64)
    model, damping = tiny_net(), 0.3
    if variant == "partial":
        model[0] = nn.Linear(3, 4, bias=False).double()
        model[2].weight.requires_grad_(False)
    before = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    nn.functional.mse_loss(model(X), y).backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    opt = KFAC(model, lr=1.0, momentum=0.0, damping=damping, fisher_type=fisher_type, adapt_damping=False)
    opt.step(lambda: (X, y))
    after = dict(model.named_parameters())
    gamma = math.sqrt(damping)
    for layer in ("0", "2"):
        A, G = (factor.numpy() for factor in opt.global_state["factors"][layer])
        pi = math.sqrt((np.trace(A) / len(A)) / (np.trace(G) / len(G)))
        dense = np.kron(A + pi * gamma * np.eye(len(A)), G + gamma / pi * np.eye(len(G)))
        names = [name for name in (f"{layer}.weight", f"{layer}.bias") if name in grads]
        grad = np.concatenate([grads[name].numpy().reshape(len(G), -1) for name in names], axis=1)  # [∇W, ∇b]
        assert grad.shape == (len(G), len(A))
        delta = np.linalg.solve(dense, grad.T.reshape(-1)).reshape(len(A), len(G)).T  # vec stacks the columns
        got = np.concatenate([(before[name] - after[name]).detach().numpy().reshape(len(G), -1) for name in names],
                             axis=1)
        np.testing.assert_allclose(got, delta, rtol=1e-10, atol=1e-13)


def per_example_factors(model, X, y, loss):
    """A and G of both layers of `tiny_net` by a loop over the examples: ā = (a, 1), g = ∂ℓ_n/∂s for the
    per-example negative log-likelihood ℓ_n (‖s_2 − y_n‖² for MSE, scaled by κ = 1/C; −log softmax for CE)."""
    first, last = model[0], model[2]
    sums = {name: [0, 0] for name in ("0", "2")}
    for x, target in zip(X, y, strict=True):
        s1 = first(x)
        a1 = torch.tanh(s1)
        s2 = last(a1)
        nll = ((s2 - target) ** 2).sum() / s2.numel() if loss == "mse" else nn.functional.cross_entropy(s2, target)
        g1, g2 = torch.autograd.grad(nll, (s1, s2))
        if loss == "mse":  # the gradient of κ·‖·‖², squared, carries κ² where G wants κ
            g1, g2 = g1 * math.sqrt(s2.numel()), g2 * math.sqrt(s2.numel())
        for name, a, grad in (("0", x, g1), ("2", a1.detach(), g2)):
            abar = torch.cat([a, torch.ones(1, dtype=a.dtype)])
            sums[name][0] = sums[name][0] + torch.outer(abar, abar) / len(X)
            sums[name][1] = sums[name][1] + torch.outer(grad, grad) / len(X)
    return sums


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_empirical_factors_match_per_example_sums(loss):
    g = torch.Generator().manual_seed(2)
    X = torch.randn(7, 3, generator=g, dtype=torch.float64)
    y = torch.randn(7, 2, generator=g, dtype=torch.float64) if loss == "mse" else torch.tensor([0, 1, 1, 0, 1, 0, 0])
    model = tiny_net(seed=4)
    factors = kronecker_factors(model, loss, [(X, y)], fisher_type="empirical")
    expected = per_example_factors(model, X, y, loss)
    assert set(factors) == {"0", "2"}
    for name in ("0", "2"):
        for got, want in zip(factors[name], expected[name], strict=True):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)


def test_sampled_factor_converges_to_the_exact_one():
    g = torch.Generator().manual_seed(2)
    X = torch.randn(20, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (20,), generator=g)
    model = tiny_net(seed=4)
    exact = kronecker_factors(model, "cross_entropy", [(X, y)], fisher_type="type-2")
    sampled = kronecker_factors(model, "cross_entropy", [(X, y)], fisher_type="mc", mc_samples=2000, seed=1)
    for name in ("0", "2"):
        torch.testing.assert_close(sampled[name][0], exact[name][0], rtol=1e-12, atol=0)  # A has no sampling
        error = float((sampled[name][1] - exact[name][1]).norm() / exact[name][1].norm())
        assert error < 0.05


def test_moving_averages_and_update_schedules(regression_data, mlp):
    X, y = regression_data(n=60)
    model = mlp()
    opt = KFAC(model, fisher_type="type-2", ema_decay=0.6, update_inverses_every=2, adapt_damping=False)
    seen = []
    for _ in range(3):
        seen.append(kronecker_factors(copy.deepcopy(model), "mse", [(X, y)], fisher_type="type-2"))
        opt.step(lambda: (X, y))
    state = opt.global_state
    assert state["factor_updates"] == 3
    for name in ("0", "2"):
        # ε = min(1 − 1/k, 0.6): 0, then 1/2, then 0.6
        for i in range(2):
            second = 0.5 * seen[0][name][i] + 0.5 * seen[1][name][i]
            torch.testing.assert_close(state["factors"][name][i], 0.6 * second + 0.4 * seen[2][name][i],
                                       rtol=1e-12, atol=1e-15)
        # the inverses come from step 3's factors (steps 1 and 3 refresh them), damped with the fixed λ
        for got, want in zip(state["inverses"][name], damped_inverses(*state["factors"][name], 1e-2), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_kfac_trains_faster_than_sgd_on_digits():
    X, y = load_digits(return_X_y=True)
    X, y = torch.tensor(X / 16.0, dtype=torch.float64), torch.tensor(y)
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))
    batches = [order[i:i + 256] for i in range(0, 6 * 256, 256)] * 5  # 30 steps on batches of 256

    def mlp():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10)).double()

    model = mlp()
    opt = KFAC(model, loss="cross_entropy", damping=1e-2)
    for index in batches:
        opt.step(lambda index=index: (X[index], y[index]))
    kfac_loss = nn.functional.cross_entropy(model(X), y).item()

    best_sgd = math.inf
    for lr in (0.3, 1.0, 2.0):
        for momentum in (0.0, 0.9):
            baseline = mlp()
            sgd = torch.optim.SGD(baseline.parameters(), lr=lr, momentum=momentum)
            for index in batches:
                sgd.zero_grad()
                nn.functional.cross_entropy(baseline(X[index]), y[index]).backward()
                sgd.step()
            value = nn.functional.cross_entropy(baseline(X), y).item()
            best_sgd = min(best_sgd, value if math.isfinite(value) else math.inf)
    assert kfac_loss < 0.04 and best_sgd > 0.08
    assert kfac_loss < best_sgd / 3


def test_kfac_trains_faster_than_sgd_on_a_regression(regression_data, mlp):
    X, y = regression_data()
    model = mlp()
    opt = KFAC(model)
    for _ in range(30):
        opt.step(lambda: (X, y))
    kfac_loss = nn.functional.mse_loss(model(X), y).item()
    best_sgd = math.inf
    for lr in (0.1, 0.3, 1.0):
        baseline = mlp()
        sgd = torch.optim.SGD(baseline.parameters(), lr=lr, momentum=0.9)
        for _ in range(30):
            sgd.zero_grad()
            nn.functional.mse_loss(baseline(X), y).backward()
            sgd.step()
        value = nn.functional.mse_loss(baseline(X), y).item()
        best_sgd = min(best_sgd, value if math.isfinite(value) else math.inf)
    assert kfac_loss < 1e-3 < best_sgd
    assert kfac_loss < best_sgd / 100


def test_damping_falls_when_the_model_is_exact():
    # linear least squares: L is its own quadratic model, ρ = 1, λ ← ω₁λ (ω₁ = 19/20 for T₁ = 1)
    X, y, model = least_squares_problem(outputs=2)
    opt = KFAC(model, damping=0.5, update_damping_every=1)
    opt.step(lambda: (X, y))
    assert opt.global_state["rho"] == pytest.approx(1.0, abs=1e-9)
    assert opt.global_state["damping"] == pytest.approx(0.5 * 0.95, rel=1e-12)


@pytest.mark.parametrize(("damping", "factor"), [
    (1e-4, 20 / 19),  # the step is too long for the quadratic model: ρ ≈ −0.005, λ up
    (3e-3, 1.0),      # ρ ≈ 0.52: λ stays
    (1.0, 19 / 20),   # ρ ≈ 0.89: λ down
])
def test_damping_follows_the_reduction_ratio(regression_data, mlp, damping, factor):
    X, y = regression_data()
    model = mlp()
    theta = flatten_params(model)
    opt = KFAC(model, damping=damping, fisher_type="type-2", update_damping_every=1)
    opt.step(lambda: (X, y))
    op = GaussNewtonOperator(mlp(), nn.functional.mse_loss, (X, y))
    objective = op.objective
    delta = flatten_params(model) - theta
    predicted = float(objective.gradient() @ delta + 0.5 * delta @ (op @ delta))
    rho = (objective.loss(theta + delta) - objective.loss()) / predicted
    state = opt.global_state
    assert state["rho"] == pytest.approx(rho, rel=1e-9)
    assert state["damping"] == pytest.approx(damping * factor, rel=1e-12)
    assert (rho < 0.25) == (factor > 1) and (rho > 0.75) == (factor < 1)


def test_state_dict_round_trip_gives_the_same_iterates(regression_data, mlp):
    X, y = regression_data(n=100)

    def make(model):
        return KFAC(model, update_damping_every=2, update_inverses_every=2, random_state=3)

    model = mlp()
    opt = make(model)
    for _ in range(3):
        opt.step(lambda: (X, y))
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    for _ in range(3):
        opt.step(lambda: (X, y))

    def resume(load_optimizer_state: bool):
        twin = mlp(seed=7)
        twin.load_state_dict(saved_model)
        twin_opt = make(twin)
        if load_optimizer_state:
            twin_opt.load_state_dict(saved_opt)
        for _ in range(3):
            twin_opt.step(lambda: (X, y))
        return twin, twin_opt.global_state

    twin, state = resume(True)
    assert all(torch.equal(a, b) for a, b in zip(twin.parameters(), model.parameters(), strict=True))
    assert state["damping"] == opt.global_state["damping"] and state["step"] == 6
    assert all(torch.equal(a, b) for name in ("0", "2")
               for a, b in zip(state["factors"][name], opt.global_state["factors"][name], strict=True))
    fresh, _ = resume(False)  # without the factors, λ, the last update and the step count the run differs
    assert max((a - b).abs().max().item() for a, b in zip(fresh.parameters(), model.parameters(), strict=True)) > 1e-4


def test_unsupported_layers_and_bad_arguments():
    with pytest.raises(ValueError, match=r"nn.Linear layers only.*\['Conv1d', 'LayerNorm'\]"):
        KFAC(nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.LayerNorm(4), nn.Linear(4, 1)))
    frozen = nn.Sequential(nn.LayerNorm(3), nn.Linear(3, 1))
    frozen[0].requires_grad_(False)
    KFAC(frozen)  # frozen layers of other kinds are fine
    model = nn.Linear(3, 1)
    for kwargs, message in [
        (dict(loss="hinge"), "loss must be one of"),
        (dict(fisher_type="exact"), "fisher_type must be one of"),
        (dict(fisher_type="empirical", mc_samples=4), "mc_samples"),
        (dict(lr=0.0), "lr > 0"),
        (dict(damping=0.0), "damping > 0"),
        (dict(ema_decay=1.0), "ema_decay"),
        (dict(update_inverses_every=0), "must be >= 1"),
        (dict(damping_factor=1.5), r"damping_factor must lie in \(0, 1\)"),
    ]:
        with pytest.raises(ValueError, match=message):
            KFAC(model, **kwargs)
    with pytest.raises(ValueError, match="needs a closure"):
        KFAC(model).step()
