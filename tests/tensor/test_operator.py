"""DenseSymmetricTensor and as_operator: contractions agree with einsum, bad arrays are refused clearly."""

import numpy as np
import pytest

from nnlift.tensor import DenseSymmetricTensor, SymmetricOperator, as_operator

from ._helpers import CountingOperator, einsum_contract, einsum_project, low_rank_tensor, random_components


@pytest.mark.parametrize("order", [3, 4])
def test_dense_contract_and_project_match_einsum(order):
    rng = np.random.default_rng(0)
    T = low_rank_tensor(*random_components(rng, 6, 4, orthogonal=False), order)
    op = DenseSymmetricTensor(T)
    V, Q = rng.standard_normal((6, 5)), rng.standard_normal((6, 3))
    assert (op.dim, op.order) == (6, order)
    assert isinstance(op, SymmetricOperator)
    np.testing.assert_allclose(op.contract(V), einsum_contract(T, V), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(op.project(Q), einsum_project(T, Q), rtol=1e-12, atol=1e-12)


def test_as_operator_passes_operators_through_and_wraps_arrays():
    T = low_rank_tensor(*random_components(np.random.default_rng(1), 4, 2, orthogonal=True), 3)
    counting = CountingOperator(T)
    assert as_operator(counting) is counting
    assert isinstance(as_operator(T), DenseSymmetricTensor)
    assert isinstance(as_operator(T.tolist()), DenseSymmetricTensor)


@pytest.mark.parametrize("array, message", [
    (np.zeros((3, 3)), "shape"),
    (np.zeros((3, 3, 4)), "shape"),
    (np.zeros((2,) * 5), "shape"),
    (np.zeros((0, 0, 0)), "shape"),
    (np.arange(27.0).reshape(3, 3, 3), "not symmetric"),
    (np.full((3, 3, 3), np.nan), "NaN or inf"),
])
def test_dense_rejects_bad_arrays(array, message):
    with pytest.raises(ValueError, match=message):
        DenseSymmetricTensor(array)


def test_dense_rejects_non_numeric_input():
    with pytest.raises(TypeError, match="dense numeric array or a SymmetricOperator"):
        as_operator(object())


def test_dense_rejects_wrong_probe_shape():
    op = DenseSymmetricTensor(np.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match=r"\(3, p\)"):
        op.contract(np.zeros(3))


def test_as_operator_rejects_unsupported_order():
    class Second:
        dim, order = 3, 2

        def contract(self, V):
            return V

        def project(self, Q):
            return Q.T @ Q

    with pytest.raises(ValueError, match="order 3 or 4"):
        as_operator(Second())
