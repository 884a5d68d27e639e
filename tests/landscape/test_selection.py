"""Parameter selection by glob, the determinism check and micro-batches, against dense matrices and unsplit data."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nnlift.landscape import (
    EmpiricalFisherOperator,
    FunctionalLoss,
    GaussNewtonOperator,
    HessianOperator,
    parameter_names,
)

OPERATORS = {"hessian": HessianOperator, "gauss_newton": GaussNewtonOperator, "fisher": EmpiricalFisherOperator}
OFFSETS = {"0.weight": (0, 12), "0.bias": (12, 16), "2.weight": (16, 24), "2.bias": (24, 26)}


def _index(names):
    return np.concatenate([np.arange(*OFFSETS[name]) for name in names])


@pytest.mark.parametrize(("selection", "names"), [
    ("0.*", ["0.weight", "0.bias"]),
    ("*.bias", ["0.bias", "2.bias"]),
    (["2.weight", "0.*"], ["0.weight", "0.bias", "2.weight"]),
    ("2.weight", ["2.weight"]),
    ("?.b*", ["0.bias", "2.bias"]),
])
def test_globs_select_the_sub_block_in_model_order(problem, dense, selection, names):
    H = dense.hessian(problem.model, problem.loss_fn, problem.X, problem.y)
    op = HessianOperator(problem.model, problem.loss_fn, (problem.X, problem.y), parameters=selection)
    assert parameter_names(problem.model, selection) == names == op.objective.names
    index = _index(names)
    torch.testing.assert_close(op.to_dense(), H[index][:, index], rtol=0, atol=1e-10)


def test_globs_select_frozen_parameters_and_none_selects_trained_ones(problem):
    problem.model[0].bias.requires_grad_(False)
    assert parameter_names(problem.model) == ["0.weight", "2.weight", "2.bias"]
    assert parameter_names(problem.model, "0.*") == ["0.weight", "0.bias"]


def test_a_pattern_matching_nothing_names_the_model_parameters(problem):
    with pytest.raises(ValueError, match=r"unknown parameter names \['layer1\.\*'\].*'0\.weight', '0\.bias'"):
        parameter_names(problem.model, ["0.*", "layer1.*"])
    with pytest.raises(ValueError, match="unknown parameter names"):
        HessianOperator(problem.model, problem.loss_fn, (problem.X, problem.y), parameters="0.Weight")


@pytest.mark.parametrize("kind", OPERATORS)
def test_micro_batches_give_the_unsplit_operator(problem, kind):
    X, y = problem.X, problem.y
    whole = OPERATORS[kind](problem.model, problem.loss_fn, (X, y))
    uneven = [(X[:5], y[:5]), (X[5:], y[5:])]
    for data, size in (((X, y), 3), ((X, y), 1), (uneven, 2)):
        split = OPERATORS[kind](problem.model, problem.loss_fn, data, micro_batch_size=size)
        assert not split.objective.data.cacheable
        torch.testing.assert_close(split.to_dense(), whole.to_dense(), rtol=0, atol=1e-10)
        assert split.objective.loss() == pytest.approx(whole.objective.loss(), rel=0, abs=1e-14)
        torch.testing.assert_close(split.objective.gradient(), whole.objective.gradient(), rtol=0, atol=1e-14)
    assert OPERATORS[kind](problem.model, problem.loss_fn, (X, y), micro_batch_size=11).objective.data.cacheable


def test_micro_batch_size_is_checked(problem):
    data = (problem.X, problem.y)
    for size in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="micro_batch_size must be a positive integer"):
            FunctionalLoss(problem.model, problem.loss_fn, data, micro_batch_size=size)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).double()
    with pytest.raises(ValueError, match="batch norm"):
        HessianOperator(model, problem.loss_fn, data, micro_batch_size=4)
    model.eval()
    HessianOperator(model, problem.loss_fn, data, micro_batch_size=4)


def _dropout_mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.5), nn.Tanh(), nn.Linear(8, 2)).double()


def test_fixed_data_and_a_shuffled_loader_without_drop_last_pass(problem):
    X, y = problem.X, problem.y
    whole = GaussNewtonOperator(problem.model, problem.loss_fn, (X, y), check_deterministic=True)
    loader = DataLoader(TensorDataset(X, y), batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0))
    shuffled = GaussNewtonOperator(problem.model, problem.loss_fn, loader, check_deterministic=True)
    torch.testing.assert_close(shuffled.to_dense(), whole.to_dense(), rtol=0, atol=1e-12)


def test_a_shuffled_loader_with_drop_last_is_refused(problem):
    loader = DataLoader(TensorDataset(problem.X, problem.y), batch_size=4, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(0))
    op = HessianOperator(problem.model, problem.loss_fn, loader)
    with pytest.raises(RuntimeError, match="batches change between passes.*shuffle=False"):
        op.check_deterministic()


def test_dropout_in_train_mode_is_refused_and_eval_mode_passes(problem):
    model = _dropout_mlp()
    data = [(problem.X[:6], problem.y[:6]), (problem.X[6:], problem.y[6:])]
    for cls in OPERATORS.values():
        with pytest.raises(RuntimeError, match="not deterministic.*eval mode"):
            cls(model, problem.loss_fn, data, check_deterministic=True)
    assert model.training
    model.eval()
    for cls in OPERATORS.values():
        cls(model, problem.loss_fn, data, check_deterministic=True)


def test_products_that_differ_are_refused(problem, monkeypatch):
    op = HessianOperator(problem.model, problem.loss_fn, (problem.X, problem.y))
    generator = torch.Generator().manual_seed(0)
    monkeypatch.setattr(op, "_matmat", lambda V: torch.randn(V.shape, generator=generator, dtype=V.dtype))
    with pytest.raises(RuntimeError, match="two products of the Hessian with the same vector differ"):
        op.check_deterministic()
