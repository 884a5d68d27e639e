"""Bad arguments and bad operators raise ValueError (TypeError for non-arrays) saying what to do."""

import numpy as np
import pytest

from nnlift.tensor import cp_symmetric

from ._helpers import low_rank_tensor, random_components

T = low_rank_tensor(*random_components(np.random.default_rng(0), 5, 2, orthogonal=True), 3)


@pytest.mark.parametrize("kwargs, message", [
    ({"rank": 0}, "rank must be an integer between 1 and the dimension d=5"),
    ({"rank": 6}, "rank must be an integer between 1 and the dimension d=5"),
    ({"rank": 2.0}, "rank must be an integer"),
    ({"rank": 2, "method": "svd"}, "method must be one of"),
    ({"rank": 2, "n_restarts": 0}, "n_restarts must be an integer >= 1"),
    ({"rank": 2, "n_iter": 0}, "n_iter must be an integer >= 1"),
    ({"rank": 2, "subspace_iter": 0}, "subspace_iter must be an integer >= 1"),
    ({"rank": 2, "refine_iter": -1}, "refine_iter must be an integer >= 0"),
    ({"rank": 2, "image_oversample": -1}, "image_oversample must be an integer >= 0"),
    ({"rank": 2, "oversample": -1}, "oversample must be an integer >= 0"),
    ({"rank": 2, "tol": 0.0}, "tol must be a positive finite number"),
    ({"rank": 2, "tol": np.nan}, "tol must be a positive finite number"),
    ({"rank": 2, "second_moment": np.eye(4)}, r"second_moment must have shape \(5, 5\)"),
    ({"rank": 2, "second_moment": np.full((5, 5), np.inf)}, "second_moment contains NaN or inf"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        cp_symmetric(T, **kwargs)


def test_non_finite_tensor():
    bad = T.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        cp_symmetric(bad, 2)


def test_zero_tensor():
    with pytest.raises(ValueError, match="tensor is zero"):
        cp_symmetric(np.zeros((4, 4, 4)), 2)


class _Broken:
    """An operator whose contract returns NaN, or a wrong shape."""

    dim, order = 5, 3

    def __init__(self, shape_ok=True):
        self.shape_ok = shape_ok

    def contract(self, V):
        return np.full(V.shape, np.nan) if self.shape_ok else np.zeros((V.shape[0], 1))

    def project(self, Q):
        return np.zeros((Q.shape[1],) * 3)


def test_operator_returning_nan():
    with pytest.raises(ValueError, match="contract returned NaN or inf; check its data"):
        cp_symmetric(_Broken(), 2)


def test_operator_returning_wrong_shape():
    with pytest.raises(ValueError, match=r"contract returned shape \(5, 1\), expected \(5, 5\)"):
        cp_symmetric(_Broken(shape_ok=False), 2)
