"""Saddle-free Newton (Dauphin et al. 2014): it leaves a saddle that Newton converges to, |Ĥ| = |H| on the full
Krylov space, and on a convex quadratic it is Newton's method."""

import copy

import pytest
import torch
from torch import nn

from nnlift.landscape import HessianOperator, flatten_params
from nnlift.optim.newton import Newton
from nnlift.optim.saddle_free import SaddleFreeNewton, lanczos_basis


class Saddle(nn.Module):
    """f(x, y) = x² − y² + y⁴/2: a saddle at 0 (Hessian diag(2, −2)), minima f = −1/2 at (0, ±1)."""

    def __init__(self, start):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(start, dtype=torch.float64))

    def forward(self, X):
        x, y = self.theta
        return (x ** 2 - y ** 2 + 0.5 * y ** 4).expand(X.shape[0])


def mean_loss(out, target):
    return out.mean()


DUMMY = (torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))


def regression_data(n=100, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return X, torch.sin(X @ torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64))


def mlp(seed=1):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()


def absolute(matrix):
    values, vectors = torch.linalg.eigh(matrix)
    return vectors @ torch.diag(values.abs()) @ vectors.T


def test_newton_converges_to_the_saddle_saddle_free_newton_escapes():
    newton_model, sfn_model = Saddle([0.5, 1e-2]), Saddle([0.5, 1e-2])
    newton = Newton(newton_model, mean_loss, line_search=False)
    sfn = SaddleFreeNewton(sfn_model, mean_loss, k=2)

    sfn.step(lambda: DUMMY)
    x, y = sfn_model.theta.detach()
    assert abs(x) < 1e-3 and y == pytest.approx(2e-2, rel=1e-3)  # x solved, y doubled: down the negative curvature
    for _ in range(4):
        newton.step(lambda: DUMMY)
    for _ in range(11):
        sfn.step(lambda: DUMMY)

    assert newton_model.theta.detach().abs().max() < 1e-15  # Newton: y ← −2y³/(1 − 3y²) → 0, the saddle
    assert newton.global_state["min_eigenvalue"] == pytest.approx(-2.0)
    torch.testing.assert_close(sfn_model.theta.detach(), torch.tensor([0.0, 1.0], dtype=torch.float64), rtol=0,
                               atol=1e-9)
    assert sfn_model(DUMMY[0]).item() == pytest.approx(-0.5, abs=1e-12)
    assert sfn.global_state["min_eigenvalue"] == pytest.approx(2.0)  # a minimum: f_yy = −2 + 6y² = 4, f_xx = 2


def test_full_krylov_space_gives_the_absolute_hessian():
    X, y = regression_data()
    model = mlp()
    op = HessianOperator(model, nn.functional.mse_loss, (X, y))
    H = op.to_dense()
    assert torch.linalg.eigvalsh(H)[0] < -1e-3  # indefinite at this point
    start = op.objective.gradient()
    V, projected = lanczos_basis(op, start, H.shape[0], generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(V.T @ V, torch.eye(V.shape[1], dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(V @ absolute(projected) @ V.T, absolute(H), rtol=0, atol=1e-9)

    V3, projected3 = lanczos_basis(op, start, 3)  # k < P: a basis of span{g, Hg, H²g}
    krylov = torch.stack([start, H @ start, H @ H @ start], dim=1)
    torch.testing.assert_close(V3 @ (V3.T @ krylov), krylov, rtol=1e-9, atol=0)
    torch.testing.assert_close(projected3, V3.T @ H @ V3, rtol=0, atol=1e-12)


def test_lanczos_basis_continues_after_breakdown():
    H = torch.diag(torch.tensor([3.0, -1.0, 2.0, 0.5], dtype=torch.float64))
    start = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)  # an eigenvector: the Krylov space is 1-D
    V, projected = lanczos_basis(H, start, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(V.T @ V, torch.eye(4, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(V @ projected @ V.T, H, rtol=0, atol=1e-12)
    torch.testing.assert_close(V[:, 0], start)


def test_step_is_the_damped_absolute_newton_step():
    X, y = regression_data()
    model = mlp()
    op = HessianOperator(model, nn.functional.mse_loss, (X, y))
    H, g, theta = op.to_dense(), op.objective.gradient(), flatten_params(model)
    opt = SaddleFreeNewton(model, nn.functional.mse_loss, k=H.shape[0], damping=(0.1,))
    before = opt.step(lambda: (X, y))
    t = opt.global_state["step_size"]
    assert t > 0 and opt.global_state["damping"] == 0.1
    expected = theta - t * torch.linalg.solve(absolute(H) + 0.1 * torch.eye(H.shape[0], dtype=torch.float64), g)
    torch.testing.assert_close(flatten_params(model), expected, rtol=0, atol=1e-9)
    assert nn.functional.mse_loss(model(X), y).item() < before


def test_damping_is_chosen_by_the_loss():
    X, y = regression_data()
    grid = (1e-3, 1e-1, 10.0)
    losses = {}
    for lam in grid:
        model = mlp()
        SaddleFreeNewton(model, nn.functional.mse_loss, k=8, damping=(lam,), max_backtracks=1).step(lambda: (X, y))
        losses[lam] = nn.functional.mse_loss(model(X), y).item()
    model = mlp()
    opt = SaddleFreeNewton(model, nn.functional.mse_loss, k=8, damping=grid)
    opt.step(lambda: (X, y))
    assert opt.global_state["damping"] == min(losses, key=losses.get)
    assert nn.functional.mse_loss(model(X), y).item() == pytest.approx(min(losses.values()), rel=1e-12)


def test_convex_quadratic_matches_newton():
    g = torch.Generator().manual_seed(3)
    X, y = torch.randn(30, 5, generator=g, dtype=torch.float64), torch.randn(30, 2, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    sfn_model = nn.Linear(5, 2).double()
    newton_model = copy.deepcopy(sfn_model)
    SaddleFreeNewton(sfn_model, nn.functional.mse_loss, k=12, damping=(0.0,)).step(lambda: (X, y))
    Newton(newton_model, nn.functional.mse_loss).step(lambda: (X, y))
    torch.testing.assert_close(flatten_params(sfn_model), flatten_params(newton_model), rtol=0, atol=1e-10)


def test_state_dict_round_trip():
    X, y = regression_data(n=50)
    model = mlp()
    opt = SaddleFreeNewton(model, nn.functional.mse_loss, k=6, subspace_steps=2)
    opt.step(lambda: (X, y))
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    opt.step(lambda: (X, y))
    twin = mlp(seed=5)
    twin.load_state_dict(saved_model)
    twin_opt = SaddleFreeNewton(twin, nn.functional.mse_loss)
    twin_opt.load_state_dict(saved_opt)
    assert twin_opt.param_groups[0]["k"] == 6 and twin_opt.param_groups[0]["subspace_steps"] == 2
    twin_opt.step(lambda: (X, y))
    assert all(torch.equal(a, b) for a, b in zip(twin.parameters(), model.parameters(), strict=True))
    assert twin_opt.global_state == opt.global_state
