"""Damped Newton: exact on a quadratic, a loss that never rises under the line search, state across state_dict."""

import copy

import pytest
import torch
from torch import nn

from nnlift.optim.newton import Newton, backtracking_line_search, spectral_solve


@pytest.mark.parametrize("line_search", [False, True])
def test_one_undamped_step_solves_a_quadratic(line_search):
    g = torch.Generator().manual_seed(3)
    X, y = torch.randn(30, 5, generator=g, dtype=torch.float64), torch.randn(30, 1, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    model = nn.Linear(5, 1).double()
    opt = Newton(model, nn.functional.mse_loss, line_search=line_search)
    opt.step(lambda: (X, y))
    solution = torch.linalg.lstsq(torch.cat([X, torch.ones(30, 1, dtype=torch.float64)], dim=1), y).solution[:, 0]
    torch.testing.assert_close(model.weight.detach()[0], solution[:5], rtol=0, atol=1e-10)
    torch.testing.assert_close(model.bias.detach(), solution[5:], rtol=0, atol=1e-10)
    assert opt.global_state["step_size"] == 1.0 and opt.global_state["min_eigenvalue"] > 0


def test_line_search_keeps_the_loss_non_increasing(regression_data, mlp):
    X, y = regression_data()
    runs = {}
    for line_search in (True, False):
        model = mlp()
        opt = Newton(model, nn.functional.mse_loss, damping=1.0, line_search=line_search)
        runs[line_search] = [opt.step(lambda: (X, y)) for _ in range(10)] + [nn.functional.mse_loss(model(X), y).item()]
    searched, plain = runs[True], runs[False]
    assert all(b <= a for a, b in zip(searched, searched[1:], strict=False))
    assert searched[-1] < 0.1 * searched[0]  # and it makes progress
    assert max(plain) > 10 * plain[0]  # the same Newton steps without it climb: the Hessian is indefinite there


def test_damping_and_pseudo_inverse_by_hand():
    values = torch.tensor([-2.0, 0.0, 3.0], dtype=torch.float64)
    vectors = torch.eye(3, dtype=torch.float64)
    rhs = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(spectral_solve(values, vectors, rhs, 1.0), torch.tensor([-1.0, 1.0, 0.25],
                                                                                       dtype=torch.float64))
    # λ = 2 makes the first eigenvalue zero: that direction is left alone, not divided by zero
    torch.testing.assert_close(spectral_solve(values, vectors, rhs, 2.0), torch.tensor([0.0, 0.5, 0.2],
                                                                                       dtype=torch.float64))


def test_backtracking_line_search_by_hand():
    # f(t) = (t − 0.3)², slope −0.6 at 0: t = 1 fails Armijo (0.49 > 0.09 − 0.6c), t = 0.5 passes (0.04)
    t, value = backtracking_line_search(lambda t: (t - 0.3) ** 2, 0.09, -0.6, c=1e-4)
    assert t == 0.5 and value == pytest.approx(0.04)
    # a climbing direction is never taken
    assert backtracking_line_search(lambda t: t, 0.0, 1.0) == (0.0, 0.0)


def test_state_dict_round_trip(regression_data, mlp):
    X, y = regression_data(n=50)
    model = mlp()
    opt = Newton(model, nn.functional.mse_loss, damping=1.0)
    opt.step(lambda: (X, y))
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    opt.step(lambda: (X, y))
    twin = mlp(seed=5)
    twin.load_state_dict(saved_model)
    twin_opt = Newton(twin, nn.functional.mse_loss, damping=0.5, line_search=False)
    twin_opt.load_state_dict(saved_opt)  # the hyperparameters come with it
    assert twin_opt.param_groups[0]["damping"] == 1.0 and twin_opt.param_groups[0]["line_search"]
    twin_opt.step(lambda: (X, y))
    assert all(torch.equal(a, b) for a, b in zip(twin.parameters(), model.parameters(), strict=True))
    assert twin_opt.global_state == opt.global_state
