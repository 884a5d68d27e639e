"""Nonlinear CG (Nocedal & Wright 2006, §5.2): linear CG on a quadratic, Rosenbrock, strong Wolfe steps, restarts,
state across state_dict."""

import copy
import math

import numpy as np
import pytest
import torch

from nnlift.optim.nonlinear_cg import NonlinearCG, strong_wolfe_line_search


def parabola(t):
    """φ(t) = (t − 2)² − 4: φ'(0) = −4, minimum at t = 2."""
    return (t - 2) ** 2 - 4, 2 * (t - 2), None


def test_line_search_by_hand():
    # t = 1 has sufficient decrease but |φ'(1)| = 2 > 0.1·4; the cubic extrapolation is exact on a parabola: t = 2
    result = strong_wolfe_line_search(parabola, 0.0, -4.0, 1.0)
    assert (result.t, result.evaluations, result.wolfe) == (pytest.approx(2.0, abs=1e-12), 2, True)
    # t = 10 is too high: zoom on [0, 10], whose cubic interpolation is exact too
    result = strong_wolfe_line_search(parabola, 0.0, -4.0, 10.0)
    assert (result.t, result.evaluations, result.wolfe) == (pytest.approx(2.0, abs=1e-12), 2, True)
    # φ = inf beyond 3: bisection of [1, 9] gives 5 (inf), of [0.5, 4.5] 2.5 (too steep), then the cubic on [0, 2.5]
    result = strong_wolfe_line_search(lambda t: parabola(t) if t <= 3 else (math.inf, math.nan, None), 0.0, -4.0, 10.0)
    assert (result.t, result.evaluations, result.wolfe) == (pytest.approx(2.0, abs=1e-12), 4, True)
    # out of evaluations before any point with sufficient decrease: no step
    result = strong_wolfe_line_search(parabola, 0.0, -4.0, 10.0, max_evaluations=1)
    assert (result.t, result.value, result.wolfe) == (0.0, 0.0, False)
    with pytest.raises(ValueError, match="descent direction"):
        strong_wolfe_line_search(parabola, 0.0, 4.0, 1.0)


def quadratic(n=10, seed=0):
    """½xᵀAx − bᵀx with A SPD, eigenvalues 10^(2i/(n−1)) (n distinct ones, condition number 100)."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    A = Q @ torch.diag(torch.logspace(0, 2, n, dtype=torch.float64)) @ Q.T
    return A, torch.randn(n, generator=g, dtype=torch.float64)


def linear_cg_iterates(A, b, steps):
    """N&W Algorithm 5.2 from x_0 = 0."""
    x, r = np.zeros(len(b)), b.copy()
    p, iterates = r.copy(), []
    for _ in range(steps):
        alpha = r @ r / (p @ A @ p)
        x, r_new = x + alpha * p, r - alpha * A @ p
        p, r = r_new + (r_new @ r_new) / (r @ r) * p, r_new
        iterates.append(x)
    return iterates


def run(f, x0, steps, **kwargs):
    """The iterates x_1, …, x_steps of NonlinearCG on f from x0, and the optimizer."""
    x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    opt = NonlinearCG([x], **kwargs)

    def closure():
        opt.zero_grad()
        value = f(x)
        value.backward()
        return value

    iterates = []
    for _ in range(steps):
        opt.step(closure)
        iterates.append(x.detach().clone())
    return iterates, opt


@pytest.mark.parametrize("method", ["FR", "PR+"])
def test_quadratic_is_linear_cg_and_ends_in_n_steps(method):
    # with exact line searches FR and PR coincide with linear CG; the tight c2 makes these near exact (a cubic
    # interpolates a parabola exactly)
    A, b = quadratic()
    n = len(b)
    iterates, opt = run(lambda x: 0.5 * x @ A @ x - b @ x, [0.0] * n, n, method=method, c1=1e-5, c2=1e-4)
    reference = linear_cg_iterates(A.numpy(), b.numpy(), n)
    for x, expected in zip(iterates, reference, strict=True):
        np.testing.assert_allclose(x.numpy(), expected, rtol=0, atol=1e-7)
    solution = np.linalg.solve(A.numpy(), b.numpy())
    assert np.abs(iterates[-2].numpy() - solution).max() > 1e-3  # n distinct eigenvalues: CG needs all n steps
    assert np.abs(iterates[-1].numpy() - solution).max() < 1e-8
    assert opt.state[opt.param_groups[0]["params"][0]]["restarts"] == 1  # restart_every = n is never reached


def test_least_squares_over_a_module_s_parameters():
    # weight (1, 3) and bias (1,) as one vector of n = 4: least squares is a quadratic, solved in n steps
    g = torch.Generator().manual_seed(5)
    X, y = torch.randn(20, 3, generator=g, dtype=torch.float64), torch.randn(20, 1, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1).double()
    opt = NonlinearCG(model.parameters(), c1=1e-5, c2=1e-4)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(X), y)
        loss.backward()
        return loss

    for _ in range(4):
        opt.step(closure)
    solution = np.linalg.lstsq(np.c_[X.numpy(), np.ones(20)], y.numpy(), rcond=None)[0][:, 0]
    np.testing.assert_allclose(np.r_[model.weight.detach().numpy()[0], model.bias.detach().numpy()], solution,
                               rtol=0, atol=1e-12)


def rosenbrock(x):
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


def steps_to_minimum(method, restart_every=None, c2=0.1):
    """The number of steps from (−1.2, 1) until ‖x − (1, 1)‖∞ < 1e-6, with every step checked against the strong
    Wolfe conditions, and the optimizer's state."""
    x = torch.tensor([-1.2, 1.0], dtype=torch.float64, requires_grad=True)
    opt = NonlinearCG([x], method=method, restart_every=restart_every, c2=c2)

    def closure():
        opt.zero_grad()
        value = rosenbrock(x)
        value.backward()
        return value

    for k in range(1, 200):
        before = x.detach().clone()
        f0 = opt.step(closure).item()
        state = opt.state[x]
        t, d, slope = state["step_size"], state["direction"], state["slope"]
        after = x.detach().clone().requires_grad_(True)
        value = rosenbrock(after)
        (gradient,) = torch.autograd.grad(value, after)
        assert state["wolfe"] and torch.equal(x.detach(), before + t * d)
        assert slope < 0 and value.item() <= f0 + 1e-4 * t * slope  # sufficient decrease
        assert abs(float(gradient @ d)) <= c2 * abs(slope)  # curvature
        if (x.detach() - 1).abs().max() < 1e-6:
            return k, state
    raise AssertionError(f"{method} did not reach (1, 1)")


def test_rosenbrock_with_strong_wolfe_steps():
    fr, fr_state = steps_to_minimum("FR")
    pr, pr_state = steps_to_minimum("PR+")
    assert (fr, pr) == (34, 32)  # restarts every n = 2 steps: PR+ needs no more than FR
    assert fr_state["restarts"] == 17 and pr_state["restarts"] == 16
    fr_alone, fr_state = steps_to_minimum("FR", restart_every=10 ** 9)
    pr_alone, pr_state = steps_to_minimum("PR+", restart_every=10 ** 9)
    assert (fr_alone, pr_alone) == (57, 24)  # without periodic restarts FR crawls, PR+ restarts itself
    # FR after strong Wolfe steps with c2 < 1/2 always descends (N&W Lemma 5.6): only the first step is steepest
    # descent; PR+ restarts where β_PR < 0
    assert fr_state["restarts"] == 1 and pr_state["restarts"] == 4


def test_restart_every_step_is_steepest_descent():
    fr, opt = run(rosenbrock, [-1.2, 1.0], 8, method="FR", restart_every=1)
    pr, _ = run(rosenbrock, [-1.2, 1.0], 8, method="PR+", restart_every=1)
    assert all(torch.equal(a, b) for a, b in zip(fr, pr, strict=True))
    state = opt.state[opt.param_groups[0]["params"][0]]
    assert torch.equal(state["direction"], -state["prev_grad"]) and state["restarts"] == state["n_iter"] == 8


def test_restarts_where_the_direction_does_not_descend():
    A, b = quadratic(n=4)
    _, opt = run(lambda x: 0.5 * x @ A @ x - b @ x, [0.0] * 4, 1, method="FR")
    x = opt.param_groups[0]["params"][0]
    state = opt.state[x]
    gradient = A @ x.detach() - b
    state["direction"] = 1e6 * gradient  # β·d_{k−1} − ∇f_k then points uphill

    def closure():
        opt.zero_grad()
        value = 0.5 * x @ A @ x - b @ x
        value.backward()
        return value

    opt.step(closure)
    torch.testing.assert_close(state["prev_grad"], gradient, rtol=0, atol=1e-14)
    assert torch.equal(state["direction"], -state["prev_grad"])
    assert state["restarts"] == 2 and state["since_restart"] == 1


def test_state_dict_round_trip_gives_the_same_iterates():
    x = torch.tensor([-1.2, 1.0], dtype=torch.float64, requires_grad=True)

    def steps(opt, variable, count):
        def closure():
            opt.zero_grad()
            value = rosenbrock(variable)
            value.backward()
            return value

        return [(opt.step(closure), variable.detach().clone())[1] for _ in range(count)]

    opt = NonlinearCG([x], method="PR+", restart_every=10 ** 9)
    steps(opt, x, 5)
    saved_x, saved_opt = x.detach().clone(), copy.deepcopy(opt.state_dict())
    uninterrupted = steps(opt, x, 10)

    def resume(load_optimizer_state: bool):
        twin = saved_x.clone().requires_grad_(True)
        twin_opt = NonlinearCG([twin], method="FR", c2=0.4)
        if load_optimizer_state:
            twin_opt.load_state_dict(saved_opt)  # the hyperparameters come with it
        return steps(twin_opt, twin, 10), twin_opt

    resumed, twin_opt = resume(True)
    assert twin_opt.param_groups[0]["method"] == "PR+" and twin_opt.param_groups[0]["c2"] == 0.1
    assert all(torch.equal(a, b) for a, b in zip(resumed, uninterrupted, strict=True))
    fresh, _ = resume(False)
    assert (fresh[-1] - uninterrupted[-1]).abs().max() > 1e-3


def test_bad_arguments():
    x = torch.zeros(2, requires_grad=True)
    for kwargs, message in [
        (dict(method="HS"), "method must be one of"),
        (dict(line_search="backtracking"), "line_search must be 'strong_wolfe'"),
        (dict(c1=0.5, c2=0.1), "0 < c1 < c2 < 1"),
        (dict(c2=1.0), "0 < c1 < c2 < 1"),
        (dict(restart_every=0), "restart_every"),
        (dict(max_ls=0), "max_ls >= 1"),
        (dict(lr=0.0), "lr > 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            NonlinearCG([x], **kwargs)
    with pytest.raises(ValueError, match="one parameter group"):
        NonlinearCG([{"params": [x]}, {"params": [torch.zeros(1, requires_grad=True)]}])
    with pytest.raises(ValueError, match="needs a closure"):
        NonlinearCG([x]).step(None)
