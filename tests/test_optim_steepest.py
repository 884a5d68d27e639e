"""SteepestDescent and CoordinateDescent: closed-form steps, the defining argmin, flat vectors, state, errors."""

import math

import numpy as np
import pytest
import torch

from nnlift.optim import CoordinateDescent, SteepestDescent, steepest_direction

G = [3.0, -4.0, 1.0]
LR = 0.5
S = (3 ** 1.5 + 4 ** 1.5 + 1) ** (1 / 3)  # ||G||_{3/2}^{1/2}


def _one_step(optimizer_class, grad=G, w=(1.0, 2.0, 3.0), **kwargs):
    w = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    optimizer = optimizer_class([w], lr=LR, **kwargs)
    w.grad = torch.tensor(grad, dtype=torch.float64)
    optimizer.step()
    return (w.detach() - torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)).numpy()


@pytest.mark.parametrize(("norm", "p", "expected"), [
    ("l2", None, [-1.5, 2.0, -0.5]),                          # −η g
    ("l1", None, [0.0, 2.0, 0.0]),                            # −η ||g||_∞ sign(g_j) e_j, j = argmax |g_j|
    ("linf", None, [-4.0, 4.0, -4.0]),                        # −η ||g||_1 sign(g)
    ("lp", 1.5, [-LR * 9 / 92 ** (1 / 3), LR * 16 / 92 ** (1 / 3), -LR / 92 ** (1 / 3)]),  # q = 3: −η g|g|/||g||_3
    ("lp", 3.0, [-LR * S * 3 ** 0.5, LR * S * 2, -LR * S]),  # q = 3/2: −η ||g||_{3/2}^{1/2} sign(g) |g|^{1/2}
])
def test_steps_match_closed_forms(norm, p, expected):
    np.testing.assert_allclose(_one_step(SteepestDescent, norm=norm, p=p), expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(("norm", "p", "primal"), [("l2", None, 2), ("l1", None, 1), ("linf", None, math.inf),
                                                   ("lp", 1.5, 1.5), ("lp", 4.0, 4.0)])
def test_step_attains_the_minimum_of_the_model(norm, p, primal):
    """Δ = argmin <g, v> + ||v||²/(2η): the value is −η ||g||_*² / 2 and no random v does better."""
    rng = np.random.default_rng(0)
    g = rng.standard_normal(6)
    delta = LR * steepest_direction(torch.tensor(g), norm, p).numpy()
    dual = 1 / (1 - 1 / primal) if 1 < primal < math.inf else (math.inf if primal == 1 else 1)

    def model(v):
        return g @ v + np.linalg.norm(v, ord=primal) ** 2 / (2 * LR)

    assert model(delta) == pytest.approx(-LR * np.linalg.norm(g, ord=dual) ** 2 / 2, rel=1e-10)
    for _ in range(200):
        assert model(delta + 0.1 * rng.standard_normal(6)) >= model(delta) - 1e-12


def test_l1_ties_are_split_by_steepest_descent_and_taken_first_by_coordinate_descent():
    grad = [3.0, -3.0, 1.0]
    np.testing.assert_allclose(_one_step(SteepestDescent, grad=grad, norm="l1"), [-0.75, 0.75, 0.0])
    np.testing.assert_allclose(_one_step(CoordinateDescent, grad=grad), [-1.5, 0.0, 0.0])
    np.testing.assert_allclose(steepest_direction(torch.zeros(3), "linf").numpy(), 0.0)


def test_greedy_coordinate_descent_is_l1_steepest_descent_without_ties():
    torch.manual_seed(0)
    Z = torch.randn(10, 4, dtype=torch.float64)
    paths = []
    for make in (lambda w: CoordinateDescent([w], lr=0.1), lambda w: SteepestDescent([w], lr=0.1, norm="l1")):
        w = torch.zeros(4, dtype=torch.float64, requires_grad=True)
        optimizer = make(w)

        def closure(w=w, optimizer=optimizer):
            optimizer.zero_grad()
            loss = torch.logsumexp(-(Z @ w), 0)
            loss.backward()
            return loss

        for _ in range(30):
            optimizer.step(closure)
        paths.append(w.detach().clone())
    torch.testing.assert_close(paths[0], paths[1])
    assert (paths[0] != 0).sum() < 4  # coordinates move one at a time: some never did


def test_the_norm_is_over_all_parameters_as_one_vector():
    a = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)
    frozen = torch.ones(3, dtype=torch.float64, requires_grad=True)  # no gradient: left alone
    a.grad = torch.tensor([1.0, -2.0], dtype=torch.float64)
    b.grad = torch.tensor([[0.5, 5.0], [-1.0, 0.0]], dtype=torch.float64)
    SteepestDescent([a, b, frozen], lr=1.0, norm="l1").step()
    np.testing.assert_allclose(a.detach().numpy(), [0.0, 0.0])
    np.testing.assert_allclose(b.detach().numpy(), [[0.0, -5.0], [0.0, 0.0]])  # the global argmax only
    SteepestDescent([a, b], lr=1.0, norm="linf").step()
    np.testing.assert_allclose(a.detach().numpy(), [-9.5, 9.5])  # ||g||_1 = 9.5 over both tensors
    np.testing.assert_allclose(frozen.detach().numpy(), 1.0)


def test_closure_is_called_and_its_loss_returned():
    c = torch.tensor([1.0, -2.0], dtype=torch.float64)
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    optimizer = SteepestDescent([w], lr=1.0)

    def closure():
        optimizer.zero_grad()
        loss = 0.5 * ((w - c) ** 2).sum()
        loss.backward()
        return loss

    assert optimizer.step(closure).item() == pytest.approx(2.5)
    torch.testing.assert_close(w.detach(), c)  # one unit gradient step on 1/2 ||w − c||² lands on c


def test_state_dict_round_trip_continues_identically():
    def make(rule_or_norm):
        w = torch.arange(5, dtype=torch.float64).requires_grad_()
        if rule_or_norm == "cyclic":
            return w, CoordinateDescent([w], lr=0.3, rule="cyclic")
        return w, SteepestDescent([w], lr=0.3, norm="lp", p=1.5)

    def steps(w, optimizer, n):
        for _ in range(n):
            w.grad = torch.sin(w.detach() + 1)
            optimizer.step()

    for kind in ("cyclic", "lp"):
        w1, opt1 = make(kind)
        steps(w1, opt1, 3)
        w2, opt2 = make(kind)
        opt2.param_groups[0]["lr"] = 99.0  # replaced by the saved one
        with torch.no_grad():
            w2.copy_(w1)
        opt2.load_state_dict(opt1.state_dict())
        assert opt2.param_groups[0]["lr"] == 0.3
        steps(w1, opt1, 4)
        steps(w2, opt2, 4)
        torch.testing.assert_close(w1, w2)
    assert opt1.state_dict()["param_groups"][0]["p"] == 1.5


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(lr=0.0), "lr must be a positive"), (dict(lr=math.nan), "lr must be a positive"),
    (dict(lr="0.1"), "lr must be a positive"), (dict(lr=0.1, norm="l3"), "norm must be one of"),
    (dict(lr=0.1, norm="lp"), "needs 1 < p < inf"), (dict(lr=0.1, norm="lp", p=1.0), "needs 1 < p < inf"),
    (dict(lr=0.1, norm="lp", p=math.inf), "needs 1 < p < inf"), (dict(lr=0.1, p=2.0), "only used with norm='lp'"),
])
def test_steepest_descent_validates_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SteepestDescent([torch.zeros(2, requires_grad=True)], **kwargs)


def test_other_errors():
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="rule must be one of"):
        CoordinateDescent([w], lr=0.1, rule="random")
    optimizer = SteepestDescent([w], lr=0.1)
    with pytest.raises(ValueError, match="norm must be one of"):
        optimizer.add_param_group({"params": [torch.zeros(1, requires_grad=True)], "norm": "l0"})
    mixed = [torch.zeros(2, requires_grad=True), torch.zeros(2, dtype=torch.float64, requires_grad=True)]
    for param in mixed:
        param.grad = torch.ones_like(param)
    with pytest.raises(ValueError, match="share dtype and device"):
        SteepestDescent(mixed, lr=0.1).step()
    sparse = torch.zeros(3, requires_grad=True)
    sparse.grad = torch.zeros(3).to_sparse()
    with pytest.raises(ValueError, match="sparse"):
        CoordinateDescent([sparse], lr=0.1).step()
