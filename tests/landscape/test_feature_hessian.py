"""The Hessian with respect to an intermediate feature against torch.autograd.functional.hessian of the network's
tail, the softmax cross-entropy closed form, the identity G = Jᵀ H_Z J at the output, and its row blocks."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from nnlift.landscape import (
    FeatureHessianOperator,
    GaussNewtonOperator,
    JacobianOperator,
    flatten_params,
    lanczos,
)

from .conftest import make_mlp


def _tail_hessian(model, start: int, Z, loss_fn, y) -> torch.Tensor:
    """Dense ∇²_Z loss(model[start:](Z), y) over the flattened batch Z."""
    tail = model[start:]
    return torch.autograd.functional.hessian(lambda z: loss_fn(tail(z.reshape(Z.shape)), y), Z.reshape(-1))


def test_matches_the_dense_hessian_of_the_networks_tail(problem):
    model, X, y = problem.model, problem.X, problem.y
    op = FeatureHessianOperator(model, problem.loss_fn, (X, y), "1")  # the tanh's output, (11, 4)
    Z = torch.tanh(model[0](X)).detach()
    reference = _tail_hessian(model, 2, Z, problem.loss_fn, y)
    assert op.shape == (44, 44) and op.feature_shape == (11, 4)
    torch.testing.assert_close(op.to_dense(), reference, rtol=1e-10, atol=1e-12)
    assert torch.linalg.matrix_norm(reference) > 1e-3  # a non-trivial reference


def test_input_of_a_module_is_the_output_of_the_one_before(problem):
    model, X, y = problem.model, problem.X, problem.y
    before = FeatureHessianOperator(model, problem.loss_fn, (X, y), "0").to_dense()
    after = FeatureHessianOperator(model, problem.loss_fn, (X, y), "1", io="input").to_dense()
    torch.testing.assert_close(before, after, rtol=1e-12, atol=1e-14)
    tail = _tail_hessian(model, 1, model[0](X).detach(), problem.loss_fn, y)
    torch.testing.assert_close(before, tail, rtol=1e-10, atol=1e-12)


def test_cross_entropy_on_the_logits_has_the_softmax_closed_form():
    model = make_mlp(3)
    generator = torch.Generator().manual_seed(4)
    X = torch.randn(7, 3, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 2, (7,), generator=generator)
    blocks = FeatureHessianOperator(model, nn.functional.cross_entropy, (X, y), "2").block_diagonal()
    p = torch.softmax(model(X), dim=1).detach()
    closed_form = (torch.diag_embed(p) - p[:, :, None] * p[:, None, :]) / len(X)
    torch.testing.assert_close(blocks, closed_form, rtol=1e-12, atol=1e-14)


def test_gauss_newton_is_jacobian_transpose_times_the_output_hessian_times_jacobian(problem):
    model, X, y = problem.model, problem.X, problem.y
    H_out = FeatureHessianOperator(model, problem.loss_fn, (X, y), "2").to_dense()
    J = JacobianOperator(model, X).to_dense()
    G = GaussNewtonOperator(model, problem.loss_fn, (X, y)).to_dense()
    torch.testing.assert_close(J.T @ H_out @ J, G, rtol=1e-10, atol=1e-12)


def test_row_blocks_are_the_diagonal_of_the_dense_matrix_and_the_rest_is_zero(problem):
    op = FeatureHessianOperator(problem.model, problem.loss_fn, (problem.X, problem.y), "1")
    dense, blocks = op.to_dense().reshape(11, 4, 11, 4), op.block_diagonal()
    for n in range(11):
        torch.testing.assert_close(blocks[n], dense[n, :, n, :], rtol=1e-12, atol=1e-14)
    off = dense.clone()
    off[torch.arange(11), :, torch.arange(11), :] = 0
    assert float(off.abs().max()) < 1e-14


def test_batch_norm_in_train_mode_couples_rows_and_refuses_blocks():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2)).double()
    generator = torch.Generator().manual_seed(2)
    X, y = torch.randn(9, 3, generator=generator, dtype=torch.float64), torch.randn(9, 2, generator=generator,
                                                                                     dtype=torch.float64)
    op = FeatureHessianOperator(model, nn.functional.mse_loss, (X, y), "0")
    with pytest.raises(ValueError, match="batch norm in train mode"):
        op.block_diagonal()
    dense = op.to_dense().reshape(9, 4, 9, 4)
    assert float(dense[0, :, 1, :].abs().max()) > 1e-6  # rows interact through the batch statistics
    model.eval()
    FeatureHessianOperator(model, nn.functional.mse_loss, (X, y), "0").block_diagonal()


def test_at_another_point_and_the_model_is_left_alone(problem):
    model, X, y = problem.model, problem.X, problem.y
    before = copy.deepcopy(model.state_dict())
    theta = flatten_params(model) + 0.3
    moved = copy.deepcopy(model)
    torch.nn.utils.vector_to_parameters(theta, moved.parameters())
    at = FeatureHessianOperator(model, problem.loss_fn, (X, y), "1", at=theta).to_dense()
    torch.testing.assert_close(at, FeatureHessianOperator(moved, problem.loss_fn, (X, y), "1").to_dense())
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name])
    assert model(X).requires_grad  # the caller's parameters still require grad


def test_lanczos_finds_the_top_eigenvalue_of_the_dense_matrix(problem):
    op = FeatureHessianOperator(problem.model, problem.loss_fn, (problem.X, problem.y), "1")
    top = lanczos(op, 2, random_state=0)
    expected = np.linalg.eigvalsh(op.to_dense().numpy())[-2:]
    np.testing.assert_allclose(np.sort(top.values), expected, rtol=1e-8)


def test_a_loss_linear_in_the_feature_has_zero_hessian():
    model = make_mlp(1)
    X = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    op = FeatureHessianOperator(model, lambda out, y: out.mean(), (X, torch.zeros(5)), "2")
    assert float(op.to_dense().abs().max()) == 0.0


def test_bad_requests_say_what_to_give(problem):
    model, loss_fn, X, y = problem.model, problem.loss_fn, problem.X, problem.y
    with pytest.raises(ValueError, match=r"not a submodule.*'0', '1', '2'"):
        FeatureHessianOperator(model, loss_fn, (X, y), "layer9")
    with pytest.raises(ValueError, match="io must be one of"):
        FeatureHessianOperator(model, loss_fn, (X, y), "1", io="middle")
    with pytest.raises(ValueError, match="one batch"):
        FeatureHessianOperator(model, loss_fn, [(X, y), (X, y)], "1")
    with pytest.raises(ValueError, match="scalar"):
        FeatureHessianOperator(model, lambda out, t: (out - t) ** 2, (X, torch.zeros(11, 2, dtype=torch.float64)),
                               "1")
    shared = nn.Sequential(nn.Linear(3, 3), nn.Tanh()).double()
    twice = nn.Sequential(shared, shared)
    with pytest.raises(ValueError, match="ran 2 times"):
        FeatureHessianOperator(twice, nn.functional.mse_loss, (X, torch.zeros(11, 3, dtype=torch.float64)), "0.1")
    op = FeatureHessianOperator(model, loss_fn, (X, y), "1")
    with pytest.raises(ValueError, match=r"shape \(44,\)"):
        op @ torch.ones(43, dtype=torch.float64)


def test_an_in_place_op_after_the_feature_and_a_frozen_model():
    """Regression: with ReLU(inplace=True) after the feature, the captured point was the ReLU's output and every
    product failed on an in-place op on the leaf. A frozen (requires_grad=False) model has a feature Hessian too."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(inplace=True), nn.Linear(4, 2)).double().requires_grad_(False)
    generator = torch.Generator().manual_seed(5)
    X, y = (torch.randn(6, 3, generator=generator, dtype=torch.float64),
            torch.randn(6, 2, generator=generator, dtype=torch.float64))
    op = FeatureHessianOperator(model, nn.functional.mse_loss, (X, y), "0")
    Z = model[0](X)
    torch.testing.assert_close(op._feature0, Z)  # before the in-place ReLU
    reference = torch.autograd.functional.hessian(
        lambda z: nn.functional.mse_loss(model[2](torch.relu(z.reshape(6, 4))), y), Z.reshape(-1))
    torch.testing.assert_close(op.to_dense(), reference, rtol=1e-12, atol=1e-14)


def test_a_loss_cut_off_from_the_feature_is_refused_and_a_one_column_feature_has_blocks():
    model = make_mlp(2)
    X = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    cut = FeatureHessianOperator(model, lambda out, t: nn.functional.mse_loss(out.detach(), t), (X, y), "1")
    with pytest.raises(ValueError, match="does not depend on the output"):
        cut @ torch.ones(20, dtype=torch.float64)
    column = nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 1), nn.Flatten(0)).double()
    op = FeatureHessianOperator(column, nn.functional.mse_loss, (X, y[:, 0]), "3")  # Z = the (5,) predictions
    torch.testing.assert_close(op.block_diagonal(), torch.full((5, 1, 1), 2 / 5, dtype=torch.float64))
