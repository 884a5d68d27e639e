"""Curvature operators against dense matrices from torch.autograd.functional on a tiny MLP."""

import copy

import numpy as np
import pytest
import torch
from scipy.sparse.linalg import LinearOperator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nnlift.landscape import (
    EmpiricalFisherOperator,
    FunctionalLoss,
    GaussNewtonOperator,
    HessianOperator,
    flatten_params,
    unflatten,
)

from .conftest import make_with_unused

OPERATORS = {"hessian": HessianOperator, "gauss_newton": GaussNewtonOperator, "fisher": EmpiricalFisherOperator}


@pytest.mark.parametrize("kind", OPERATORS)
def test_products_equal_the_dense_matrix(problem, dense, kind):
    reference = getattr(dense, kind)(problem.model, problem.loss_fn, problem.X, problem.y)
    op = OPERATORS[kind](problem.model, problem.loss_fn, (problem.X, problem.y))
    v = torch.randn(26, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert op.shape == (26, 26) and op.dtype == torch.float64 and op.device.type == "cpu"
    torch.testing.assert_close(op @ v, reference @ v, rtol=0, atol=1e-10)
    torch.testing.assert_close(op.to_dense(), reference, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", OPERATORS)
def test_batched_products_equal_column_by_column(problem, kind):
    op = OPERATORS[kind](problem.model, problem.loss_fn, (problem.X, problem.y), chunk_size=2)
    V = torch.randn(26, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(op @ V, torch.stack([op @ V[:, i] for i in range(5)], dim=1), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", OPERATORS)
def test_batches_are_weighted_by_size(problem, kind):
    X, y = problem.X, problem.y
    whole = OPERATORS[kind](problem.model, problem.loss_fn, (X, y)).to_dense()
    uneven = [(X[:2], y[:2]), (X[2:7], y[2:7]), (X[7:], y[7:])]
    loader = DataLoader(TensorDataset(X, y), batch_size=4)
    for data in (uneven, loader):
        torch.testing.assert_close(OPERATORS[kind](problem.model, problem.loss_fn, data).to_dense(), whole,
                                   rtol=0, atol=1e-12)


@pytest.mark.parametrize("selection", [["2.weight"], lambda name, p: name.startswith("0.")])
def test_parameter_group_is_the_sub_block(problem, dense, selection):
    H = dense.hessian(problem.model, problem.loss_fn, problem.X, problem.y)
    sizes = {name: p.numel() for name, p in problem.model.named_parameters()}
    offsets = np.cumsum([0, *sizes.values()])
    starts = dict(zip(sizes, offsets[:-1], strict=True))
    names = selection if isinstance(selection, list) else ["0.weight", "0.bias"]
    index = np.concatenate([np.arange(starts[n], starts[n] + sizes[n]) for n in names])
    op = HessianOperator(problem.model, problem.loss_fn, (problem.X, problem.y), parameters=selection)
    assert op.objective.names == names
    torch.testing.assert_close(op.to_dense(), H[index][:, index], rtol=0, atol=1e-10)


@pytest.mark.parametrize("training", [True, False])
def test_model_is_left_as_it_was(training):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 2)).double()
    model.train(training)
    before = copy.deepcopy(model.state_dict())
    X, y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 2, dtype=torch.float64)
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    for cls in (HessianOperator, GaussNewtonOperator):
        cls(model, nn.functional.mse_loss, (X, y)) @ v
    if not training:
        EmpiricalFisherOperator(model, nn.functional.mse_loss, (X, y)) @ v
    assert model.training is training and all(m.training is training for m in model.modules())
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_batch_norm_in_eval_mode_matches_the_dense_hessian(dense):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2)).double()
    model[1].running_mean.normal_()
    model.eval()
    X, y = torch.randn(7, 3, dtype=torch.float64), torch.randn(7, 2, dtype=torch.float64)
    reference = dense.hessian(model, nn.functional.mse_loss, X, y)
    op = HessianOperator(model, nn.functional.mse_loss, (X, y))
    torch.testing.assert_close(op.to_dense(), reference, rtol=0, atol=1e-10)


def test_gradient_loss_and_moved_point(problem):
    objective = FunctionalLoss(problem.model, problem.loss_fn, (problem.X, problem.y))
    loss = problem.loss_fn(problem.model(problem.X), problem.y)
    gradient = torch.autograd.grad(loss, list(problem.model.parameters()))
    assert objective.loss() == pytest.approx(loss.item(), abs=1e-14)
    torch.testing.assert_close(objective.gradient(), torch.cat([g.reshape(-1) for g in gradient]), rtol=0, atol=1e-14)
    moved = objective.point + 0.1
    other = copy.deepcopy(problem.model)
    torch.nn.utils.vector_to_parameters(moved, other.parameters())
    data = (problem.X, problem.y)
    torch.testing.assert_close(HessianOperator(problem.model, problem.loss_fn, data, at=moved).to_dense(),
                               HessianOperator(other, problem.loss_fn, data).to_dense(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("as_numpy", [False, True])
def test_the_point_is_a_copy_of_the_callers_vector(problem, as_numpy):
    """Reusing the vector passed as `at` must not move the operator: loss, gradient and products stay at the
    point it was made at."""
    data = (problem.X, problem.y)
    theta = FunctionalLoss(problem.model, problem.loss_fn, data).point + 0.3
    point = theta.numpy() if as_numpy else theta
    op = HessianOperator(problem.model, problem.loss_fn, data, at=point)
    reference = HessianOperator(problem.model, problem.loss_fn, data, at=theta.clone())
    v = torch.linspace(-1, 1, op.shape[0], dtype=torch.float64)
    point[:] = 0
    assert op.objective.loss() == reference.objective.loss()
    torch.testing.assert_close(op @ v, reference @ v, rtol=0, atol=0)
    with pytest.raises(ValueError, match="one parameter vector"):
        HessianOperator(problem.model, problem.loss_fn, data, at=torch.zeros(op.shape[0], 2, dtype=torch.float64))


def test_numpy_products_and_scipy_operator(problem):
    op = HessianOperator(problem.model, problem.loss_fn, (problem.X, problem.y))
    V = np.random.default_rng(0).standard_normal((26, 3))
    expected = (op @ torch.from_numpy(V)).numpy()
    assert isinstance(op @ V, np.ndarray) and (op @ V).dtype == np.float64
    linear = op.to_scipy()
    assert isinstance(linear, LinearOperator) and linear.shape == (26, 26) and linear.dtype == np.float64
    np.testing.assert_allclose(linear.matmat(V), expected, rtol=0, atol=1e-14)
    np.testing.assert_allclose(linear.matvec(V[:, 0]), expected[:, 0], rtol=0, atol=1e-14)


def test_flatten_and_unflatten_round_trip(problem):
    theta = flatten_params(problem.model)
    parts = unflatten(theta, [p.shape for p in problem.model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(parts, problem.model.parameters(), strict=True))
    with pytest.raises(ValueError, match="length 26"):
        unflatten(theta[:-1], [p.shape for p in problem.model.parameters()])


def test_bad_input_is_refused(problem):
    model, loss_fn, X, y = problem.model, problem.loss_fn, problem.X, problem.y
    op = HessianOperator(model, loss_fn, (X, y))
    with pytest.raises(ValueError, match=r"shape \(26,\)"):
        op @ torch.zeros(25, dtype=torch.float64)
    with pytest.raises(ValueError, match="NaN"):
        op @ torch.full((26,), float("nan"), dtype=torch.float64)
    with pytest.raises(ValueError, match="m >= 1"):
        op @ np.zeros((26, 0))
    with pytest.raises(ValueError, match="overflows the operator's torch.float32"):
        HessianOperator(copy.deepcopy(model).float(), loss_fn, (X.float(), y)) @ np.full(26, 1e300)
    with pytest.raises(ValueError, match="at least one row"):
        HessianOperator(model, loss_fn, (X[:0], y[:0]))
    with pytest.raises(ValueError, match="NaN"):
        HessianOperator(model, loss_fn, (X * float("nan"), y))
    with pytest.raises(ValueError, match="one target per row"):
        HessianOperator(model, loss_fn, (X, y[:3]))
    with pytest.raises(TypeError, match="one-shot iterator"):
        HessianOperator(model, loss_fn, iter([(X, y)]))
    with pytest.raises(ValueError, match="no batches"):
        HessianOperator(model, loss_fn, []) @ torch.zeros(26, dtype=torch.float64)
    with pytest.raises(ValueError, match="unknown parameter names"):
        HessianOperator(model, loss_fn, (X, y), parameters=["missing.weight"])
    with pytest.raises(ValueError, match="no parameter is selected"):
        HessianOperator(model, loss_fn, (X, y), parameters=lambda name, p: False)
    with pytest.raises(ValueError, match="at must have shape"):
        HessianOperator(model, loss_fn, (X, y), at=torch.zeros(3))


@pytest.mark.parametrize(("values", "dtype", "finite"), [
    ([1.0, -2.0], torch.float32, True), ([1.0, float("nan")], torch.float32, False),
    ([float("inf"), -float("inf")], torch.float64, False), ([1e308, 1e308], torch.float64, True),
    ([3e38, 3e38], torch.float32, True), ([1e308, float("inf")], torch.float64, False)])
def test_the_fast_finiteness_check_agrees_with_isfinite_even_when_the_sum_overflows(values, dtype, finite):
    from nnlift.landscape.operators import all_finite

    tensor = torch.tensor(values, dtype=dtype)
    assert all_finite(tensor) is finite is bool(torch.isfinite(tensor).all())


def test_a_parameter_the_loss_ignores_has_zero_hessian_rows_for_one_vector_and_a_block(problem, dense):
    """Regression: the single-vector autograd path raised on an unused parameter while the block path gave zeros."""
    model = make_with_unused()
    X, y = problem.X, torch.randn(11, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    op = HessianOperator(model, nn.functional.mse_loss, (X, y))
    full = torch.zeros(38, 38, dtype=torch.float64)
    inner = nn.Sequential(model.used, nn.Tanh())
    full[:8, :8] = dense.hessian(inner, nn.functional.mse_loss, X, y)
    v = torch.randn(38, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    torch.testing.assert_close(op @ v, full @ v, rtol=0, atol=1e-12)
    torch.testing.assert_close(op @ torch.stack([v, 2 * v], 1), full @ torch.stack([v, 2 * v], 1), rtol=0,
                               atol=1e-12)
    assert float((full[:8, :8]).abs().max()) > 1e-3


def test_a_loss_linear_in_the_parameters_has_a_zero_hessian():
    model = nn.Linear(3, 1, bias=False).double()
    X = torch.randn(6, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    op = HessianOperator(model, lambda out, y: out.mean(), (X, torch.zeros(6)))
    assert float((op @ torch.ones(3, dtype=torch.float64)).abs().max()) == 0.0


class _ConvWithUnused(nn.Module):
    """Conv1d(2, 3, 3) -> tanh -> (optional BatchNorm1d) -> flatten -> Linear(12, 2), and a Linear(4, 4) never
    called: the first single-vector Hessian product of a convolutional model goes reverse-over-forward on CPU."""

    def __init__(self, batch_norm: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv1d(2, 3, 3)
        self.norm = nn.BatchNorm1d(3) if batch_norm else nn.Identity()
        self.head, self.unused = nn.Linear(12, 2), nn.Linear(4, 4)

    def forward(self, x):
        return self.head(torch.flatten(self.norm(torch.tanh(self.conv(x))), 1))


@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("loss_fn", [nn.functional.cross_entropy, nn.functional.mse_loss])
def test_a_convolutional_model_matches_the_dense_hessian_on_the_first_and_later_products(dense, batch_norm, loss_fn):
    """The first product (reverse-over-forward), the second (the retained double-backward graph) and a block
    (vmap) agree with the dense Hessian, with zero rows for the parameters forward never uses, also with batch norm
    in train mode (batch statistics)."""
    model = _ConvWithUnused(batch_norm).double()
    generator = torch.Generator().manual_seed(5)
    X = torch.randn(9, 2, 6, generator=generator, dtype=torch.float64)
    y = (torch.randint(0, 2, (9,), generator=generator) if loss_fn is nn.functional.cross_entropy
         else torch.randn(9, 2, generator=generator, dtype=torch.float64))
    P = sum(p.numel() for p in model.parameters())
    used = P - 20
    reference = torch.zeros(P, P, dtype=torch.float64)
    reference[:used, :used] = dense.hessian(nn.Sequential(model.conv, nn.Tanh(), model.norm, nn.Flatten(),
                                                          model.head), loss_fn, X, y)
    before = copy.deepcopy(model.state_dict())
    op = HessianOperator(model, loss_fn, (X, y))
    vectors = torch.randn(P, 3, generator=generator, dtype=torch.float64)
    for column in range(2):
        torch.testing.assert_close(op @ vectors[:, column], reference @ vectors[:, column], rtol=0, atol=1e-12)
    torch.testing.assert_close(op @ vectors, reference @ vectors, rtol=0, atol=1e-12)
    assert float(reference.abs().max()) > 1e-3
    assert all(torch.equal(value, before[name]) for name, value in model.state_dict().items())


def test_a_convolutional_loss_linear_in_the_parameters_has_a_zero_hessian():
    model = nn.Conv1d(1, 1, 2, bias=False).double()
    X = torch.randn(6, 1, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    op = HessianOperator(model, lambda out, y: out.mean(), (X, torch.zeros(6)))
    assert float((op @ torch.ones(2, dtype=torch.float64)).abs().max()) == 0.0


def test_the_first_product_of_a_convolutional_model_skips_the_transposed_convolution():
    """The reason for the reverse-over-forward first product: the double backward of a convolution runs torch's CPU
    transposed convolution (slow_conv_transpose2d in float64), which the first product must not call, while the
    second (the retained graph) does. A silent fallback to the retained graph would pass every value test."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(8, 3)).double()
    generator = torch.Generator().manual_seed(0)
    X, y = torch.randn(5, 1, 4, 4, generator=generator, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1])
    op = HessianOperator(nn.Sequential(nn.Identity(), model), nn.functional.cross_entropy, (X, y))
    v = torch.randn(op.shape[0], generator=generator, dtype=torch.float64)
    calls, products = [], []
    for _ in range(2):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            products.append(op @ v)
        calls.append(sum(event.count for event in prof.key_averages() if "conv_transpose" in event.key))
    assert calls[0] == 0 and calls[1] > 0
    torch.testing.assert_close(products[0], products[1], rtol=0, atol=1e-12)


_CONV_ARCHITECTURES = {
    "in-place relu": lambda: nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(48, 3)),
    "max pool": lambda: nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Softplus(), nn.MaxPool2d(2), nn.Flatten(),
                                      nn.Linear(27, 3)),
    "stride, avg pool": lambda: nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.Tanh(), nn.AvgPool2d(3),
                                              nn.Flatten(), nn.Linear(3, 3)),
    "dropout in eval": lambda: nn.Sequential(nn.Conv2d(2, 3, 3), nn.GELU(), nn.Dropout(0.5), nn.Flatten(),
                                             nn.Linear(48, 3)).eval(),
    "transposed conv": lambda: nn.Sequential(nn.ConvTranspose2d(2, 2, 3), nn.Tanh(), nn.Conv2d(2, 1, 3), nn.Sigmoid(),
                                             nn.Flatten(), nn.Linear(36, 3)),
    "groups, dilation": lambda: nn.Sequential(nn.Conv2d(2, 4, 3, groups=2, dilation=2), nn.ELU(), nn.Flatten(),
                                              nn.Linear(16, 3)),
}


@pytest.mark.parametrize("architecture", list(_CONV_ARCHITECTURES))
def test_the_reverse_over_forward_first_product_matches_the_dense_hessian_across_conv_layers(dense, architecture):
    torch.manual_seed(0)
    model = _CONV_ARCHITECTURES[architecture]().double()
    generator = torch.Generator().manual_seed(1)
    X, y = torch.randn(6, 2, 6, 6, generator=generator, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])
    reference = dense.hessian(model, nn.functional.cross_entropy, X, y)
    op = HessianOperator(model, nn.functional.cross_entropy, (X, y))
    v = torch.randn(reference.shape[0], generator=generator, dtype=torch.float64)
    for _ in range(2):  # the first product (reverse-over-forward), then the retained graph
        torch.testing.assert_close(op @ v, reference @ v, rtol=0, atol=1e-12)
