"""Damped inverses (CG, LSMR, Neumann) against dense solves, the output Jacobian against torch.func's jacrev and
the identity G = Jᵀ H_ℓ J, and XTrace against exact traces."""

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, jacrev

from nnlift.landscape import (
    GaussNewtonOperator,
    HessianOperator,
    InverseOperator,
    JacobianOperator,
    KFACOperator,
    MCFisherOperator,
    hutchpp_trace,
    xtrace,
)

from .conftest import dense_hessian, make_mlp, make_with_unused


def _data(seed=1, n=11):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 3, generator=generator, dtype=torch.float64),
            torch.randn(n, 2, generator=generator, dtype=torch.float64))


def _dense_jacobian(model, X):
    params = {name: p.detach() for name, p in model.named_parameters()}
    jac = jacrev(lambda p: functional_call(model, p, (X,)).reshape(-1))(params)
    return torch.cat([jac[name].reshape(jac[name].shape[0], -1) for name in params], dim=1).numpy()


def test_jacobian_and_its_transpose_equal_jacrev_for_one_batch_several_batches_and_a_bare_input():
    model, (X, y) = make_mlp(), _data()
    before = copy.deepcopy(model.state_dict())
    reference = _dense_jacobian(model, X)
    J = JacobianOperator(model, (X, y))
    assert J.shape == (22, 26)
    np.testing.assert_allclose(J.to_dense().numpy(), reference, atol=1e-14)
    np.testing.assert_allclose(J.T.to_dense().numpy(), reference.T, atol=1e-14)
    batches = JacobianOperator(model, [(X[:4], y[:4]), (X[4:], y[4:])])
    np.testing.assert_allclose(batches.to_dense().numpy(), reference, atol=1e-14)
    np.testing.assert_allclose(JacobianOperator(model, X.numpy()).to_dense().numpy(), reference, atol=1e-14)
    linear = J.to_scipy()
    rng = np.random.default_rng(0)
    u, v = rng.standard_normal(22), rng.standard_normal(26)
    assert np.isclose(u @ linear.matvec(v), linear.rmatvec(u) @ v, rtol=1e-12)
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())


def test_jacobian_of_a_parameter_group_and_at_another_point():
    model, (X, y) = make_mlp(), _data()
    last = JacobianOperator(model, (X, y), parameters="2.*")
    np.testing.assert_allclose(last.to_dense().numpy(), _dense_jacobian(model, X)[:, -10:], atol=1e-14)
    other = make_mlp(seed=5)
    theta = torch.cat([p.detach().reshape(-1) for p in other.parameters()])
    np.testing.assert_allclose(JacobianOperator(model, (X, y), at=theta).to_dense().numpy(),
                               _dense_jacobian(other, X), atol=1e-14)


def test_gauss_newton_is_j_transpose_h_j():
    model, (X, y) = make_mlp(), _data()
    J = JacobianOperator(model, (X, y)).to_dense().numpy()
    G = GaussNewtonOperator(model, nn.functional.mse_loss, (X, y)).to_dense().numpy()
    np.testing.assert_allclose(G, J.T @ J * 2 / J.shape[0], atol=1e-14)  # mse_loss: H_ℓ = 2/(N·C) I


@pytest.mark.parametrize("method", ["cg", "lsmr", "neumann"])
def test_damped_inverse_of_the_gauss_newton_matrix_equals_a_dense_solve(method):
    model, (X, y) = make_mlp(), _data()
    G = GaussNewtonOperator(model, nn.functional.mse_loss, (X, y))
    dense = G.to_dense().numpy() + 0.1 * np.eye(26)
    B = np.random.default_rng(0).standard_normal((26, 3))
    inverse = InverseOperator(G, 0.1, method=method, tol=1e-12, **({"num_terms": 3000} if method == "neumann" else {}))
    np.testing.assert_allclose(inverse @ B, np.linalg.solve(dense, B), rtol=1e-7, atol=1e-9)
    assert inverse.residuals(B).max() < 1e-8
    np.testing.assert_allclose(inverse.to_dense().numpy(), np.linalg.inv(dense), rtol=1e-6, atol=1e-8)


def test_lsmr_solves_an_indefinite_hessian_and_cg_needs_damping_past_its_negative_eigenvalues():
    model, (X, y) = make_mlp(), _data()
    H = HessianOperator(model, nn.functional.mse_loss, (X, y))
    dense = dense_hessian(model, nn.functional.mse_loss, X, y).numpy()
    eigenvalues = np.linalg.eigvalsh(dense)
    assert eigenvalues[0] < 0 < eigenvalues[-1]
    b = np.random.default_rng(1).standard_normal(26)
    np.testing.assert_allclose(InverseOperator(H, method="lsmr", tol=1e-13) @ b, np.linalg.solve(dense, b),
                               rtol=1e-6, atol=1e-6 * np.abs(np.linalg.solve(dense, b)).max())
    shift = 1.0 - eigenvalues[0]
    positive = InverseOperator(H, shift, method="cg", tol=1e-12)
    np.testing.assert_allclose(positive @ b, np.linalg.solve(dense + shift * np.eye(26), b), rtol=1e-8, atol=1e-10)


def test_the_neumann_scale_comes_from_the_top_eigenvalue_and_a_negative_operator_is_refused():
    model, (X, y) = make_mlp(), _data()
    G = GaussNewtonOperator(model, nn.functional.mse_loss, (X, y))
    top = np.linalg.eigvalsh(G.to_dense().numpy())[-1]
    assert np.isclose(InverseOperator(G, 0.5, method="neumann").scale, 1 / (top + 0.5), rtol=1e-6)
    kfac = KFACOperator(model, nn.functional.mse_loss, (X, y))
    with pytest.raises(ValueError, match="not positive definite"):
        InverseOperator(_Negated(kfac), 0.0, method="neumann")
    H = HessianOperator(model, nn.functional.mse_loss, (X, y))
    with pytest.raises(ValueError, match="not positive definite"):  # indefinite: λ_max > 0 is not enough
        InverseOperator(H, 0.0, method="neumann")


class _Negated(KFACOperator):
    """−A for a K-FAC operator A (negative semi-definite), to test the refusal."""

    def __init__(self, kfac):
        self.__dict__.update(kfac.__dict__)

    def _matmat(self, V):
        return -super()._matmat(V)


@pytest.mark.parametrize(("kwargs", "message"), [({"method": "qr"}, "method must be one of"),
                                                 ({"damping": -1.0}, "damping must be"),
                                                 ({"tol": 2.0}, "tol must be"),
                                                 ({"max_iter": 0}, "max_iter must be"),
                                                 ({"num_terms": 10}, "belong to method='neumann'")])
def test_inverse_arguments_are_checked(kwargs, message):
    model, (X, y) = make_mlp(), _data()
    with pytest.raises(ValueError, match=message):
        InverseOperator(GaussNewtonOperator(model, nn.functional.mse_loss, (X, y)), **kwargs)
    with pytest.raises(TypeError, match="nnlift operator"):
        InverseOperator(np.eye(3))


def test_unconverged_solves_and_zero_columns_are_reported_not_returned():
    model, (X, y) = make_mlp(), _data()
    G = GaussNewtonOperator(model, nn.functional.mse_loss, (X, y))
    b = np.random.default_rng(2).standard_normal(26)
    with pytest.raises(RuntimeError, match="CG stopped at a relative residual"):
        InverseOperator(G, 1e-3, method="cg", tol=1e-10, max_iter=3) @ b
    with pytest.raises(RuntimeError, match="LSMR hit max_iter"):
        InverseOperator(G, 1e-3, method="lsmr", tol=1e-12, max_iter=3) @ b
    with pytest.raises(ValueError, match="zero column"):
        InverseOperator(G, 0.1).residuals(np.c_[b, np.zeros(26)])


def test_xtrace_is_exact_below_half_its_products_and_beats_hutchpp_on_a_decaying_spectrum():
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((120, 120)))
    low_rank = torch.tensor(Q[:, :5] @ np.diag([5.0, 4, 3, 2, 1]) @ Q[:, :5].T)
    assert np.isclose(xtrace(low_rank, 12, random_state=0).estimate, 15.0, rtol=1e-12)
    decaying = torch.tensor(Q @ np.diag(1.0 / np.arange(1, 121) ** 2) @ Q.T)
    exact = float(np.trace(decaying.numpy()))
    errors_x = [abs(xtrace(decaying, 30, random_state=seed).estimate - exact) for seed in range(20)]
    errors_h = [abs(hutchpp_trace(decaying, 30, random_state=seed).estimate - exact) for seed in range(20)]
    assert np.median(errors_x) < 0.01 * exact and np.median(errors_x) < np.median(errors_h)
    state = torch.random.get_rng_state()
    assert xtrace(decaying, 30, random_state=3).estimate == xtrace(decaying, 30, random_state=3).estimate
    assert torch.equal(state, torch.random.get_rng_state())
    with pytest.raises(ValueError, match="even"):
        xtrace(decaying, 31)


@pytest.mark.parametrize("kind", ["mse", "cross_entropy"])
def test_monte_carlo_fisher_averages_to_the_gauss_newton_matrix(kind):
    """For these losses the type-2 Fisher is the Gauss-Newton matrix; the MC Fisher with S samples per row is
    unbiased for it, with error ~ 1/√S, and each draw is positive semi-definite of rank <= N·S."""
    model, (X, y) = make_mlp(), _data()
    if kind == "cross_entropy":
        y, loss_fn = (y[:, 0] > 0).long(), nn.functional.cross_entropy
    else:
        loss_fn = nn.functional.mse_loss
    G = GaussNewtonOperator(model, loss_fn, (X, y)).to_dense().numpy()
    errors = {}
    for samples in (100, 10_000):
        F = MCFisherOperator(model, loss_fn, (X, y), mc_samples=samples, random_state=1).to_dense().numpy()
        errors[samples] = np.abs(F - G).max() / np.abs(G).max()
    assert errors[10_000] < 0.02 and errors[10_000] < errors[100] / 3
    one = MCFisherOperator(model, loss_fn, (X, y), mc_samples=1).to_dense().numpy()
    assert np.linalg.eigvalsh((one + one.T) / 2).min() > -1e-12 and np.linalg.matrix_rank(one, tol=1e-10) <= 11
    np.testing.assert_array_equal(one, MCFisherOperator(model, loss_fn, (X, y), mc_samples=1).to_dense().numpy())
    with pytest.raises(ValueError, match="mc_samples"):
        MCFisherOperator(model, loss_fn, (X, y), mc_samples=0)


def test_neumann_on_a_rank_deficient_gauss_newton_matrix_and_numpy_scalars():
    """Regression: λ_min of a singular G was sought by Lanczos on G itself, whose relative tolerance cannot be met
    at 0; the ends are now taken of G + λI. 11 rows x 2 outputs give G rank <= 22 < P = 26."""
    model, (X, y) = make_mlp(), _data()
    G = GaussNewtonOperator(model, nn.functional.mse_loss, (X, y))
    dense = G.to_dense().numpy()
    assert np.linalg.eigvalsh(dense)[0] < 1e-10
    inverse = InverseOperator(G, np.float32(0.1), method="neumann", num_terms=np.int64(3000))
    assert np.isclose(inverse.scale, 1 / (np.linalg.eigvalsh(dense)[-1] + 0.1), rtol=1e-6)
    b = np.random.default_rng(3).standard_normal(26)
    np.testing.assert_allclose(inverse @ b, np.linalg.solve(dense + 0.1 * np.eye(26), b), rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match="nearly singular|too close to 0"):
        InverseOperator(G, 0.0, method="neumann")


def test_float32_operators_get_a_reachable_default_tolerance():
    model, (X, y) = make_mlp().float(), _data()
    G = GaussNewtonOperator(model, nn.functional.mse_loss, (X.float(), y.float()))
    b = torch.randn(26, generator=torch.Generator().manual_seed(4))
    inverse = InverseOperator(G, 0.1)
    assert inverse.tol == 1e-5 and inverse.residuals(b).max() <= 1e-5
    dense = G.to_dense().double().numpy() + 0.1 * np.eye(26)
    exact = np.linalg.solve(dense, b.double().numpy())
    np.testing.assert_allclose((inverse @ b).double().numpy(), exact, rtol=0, atol=1e-3 * np.abs(exact).max())
    with pytest.raises(ValueError, match="below 10 eps"):
        InverseOperator(G, 0.1, tol=1e-8)


def test_parameters_the_output_ignores_are_refused_by_the_curvlinops_operators():
    model, (X, y) = make_with_unused(), _data()
    for make in (lambda: KFACOperator(model, nn.functional.mse_loss, (X, y)),
                 lambda: MCFisherOperator(model, nn.functional.mse_loss, (X, y)),
                 lambda: JacobianOperator(model, X)):
        with pytest.raises(ValueError, match=r"\['unused.weight', 'unused.bias'\] do not affect"):
            make()
    assert JacobianOperator(model, X, parameters="used.*").shape == (22, 8)
