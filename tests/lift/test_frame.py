"""The estimators' inner frame: exact maps back to the user's units, clear errors, affine equivariance."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnlift import LiftRegressor
from nnlift._training import TwoLayerParams, predict_two_layer
from nnlift.datasets import make_teacher
from nnlift.lift import NNLiftWarning
from nnlift.lift.frame import fit_frame

_TEACHER = make_teacher(20_000, 4, 2, "tanh", weight_scale=1.5, random_state=3, n_test=2_000)
_SETTINGS = {"activation": "tanh", "random_state": 0, "max_iter": 30, "max_rows": 5_000, "scale_bias_rows": 3_000}


def _fit(X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NNLiftWarning)
        return LiftRegressor(2, **_SETTINGS).fit(X, y)


_REFERENCE = _fit(_TEACHER.X, _TEACHER.y)


def test_frame_whitens_and_maps_parameters_back_exactly():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5_000, 3)) @ np.array([[2.0, 0, 0], [1.0, 0.5, 0], [0, 3.0, 1e-3]]) + [5.0, -1e3, 7.0]
    y = 1e4 * rng.standard_normal(5_000) + 3.0
    frame = fit_frame(X, y)
    Z = frame.features(X)
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(np.cov(Z.T), np.eye(3), atol=1e-10)
    params = TwoLayerParams(rng.standard_normal((3, 2)), rng.standard_normal(2), rng.standard_normal(2), 0.3)
    in_frame = frame.y_mean + frame.y_scale * predict_two_layer(params, Z, "tanh")
    np.testing.assert_allclose(predict_two_layer(frame.to_user(params), X, "tanh"), in_frame,
                               atol=1e-10 * np.abs(in_frame).max())


def test_whitening_ignores_per_feature_units_and_offsets():
    X = _TEACHER.X[:5_000]
    scales, offsets = np.array([1e-6, 1.0, 1e6, 3.0]), np.array([2.0, -1e4, 5e9, 0.0])
    np.testing.assert_allclose(fit_frame(X * scales + offsets).features(X * scales + offsets),
                               fit_frame(X).features(X), atol=1e-9)


@pytest.mark.parametrize(("column", "message"), [(np.full(300, 3.0), "constant"), (np.full(300, 5.0), "constant"),
                                                 (None, "collinear")])
def test_constant_and_collinear_columns_are_named(column, message):
    X = np.random.default_rng(1).standard_normal((300, 3))
    X = np.column_stack([X, X[:, 0] + X[:, 1] if column is None else column])
    with pytest.raises(ValueError, match=message) as info:
        fit_frame(X, np.arange(300.0))
    assert "3" in str(info.value)


def test_constant_y_says_so():
    with pytest.raises(ValueError, match="y is constant"):
        LiftRegressor(2).fit(np.random.default_rng(0).standard_normal((500, 4)), np.full(500, 2.5))


@settings(max_examples=4, deadline=None, derandomize=True)
@given(log_scales=st.lists(st.floats(-6, 6), min_size=4, max_size=4),
       relative_offsets=st.lists(st.floats(-1e4, 1e4), min_size=4, max_size=4),
       log_alpha=st.floats(-6, 6), beta=st.floats(-1e3, 1e3))
def test_predictions_are_equivariant_to_units_and_offsets(log_scales, relative_offsets, log_alpha, beta):
    """x -> D x + o and y -> alpha y + beta: the fit maps through the same transform, to 1e-6 relative."""
    scales = 10.0 ** np.array(log_scales)
    offsets = np.array(relative_offsets) * scales
    alpha = 10.0**log_alpha
    model = _fit(_TEACHER.X * scales + offsets, alpha * _TEACHER.y + beta)
    expected = alpha * _REFERENCE.predict(_TEACHER.X_test) + beta
    got = model.predict(_TEACHER.X_test * scales + offsets)
    np.testing.assert_allclose((got - beta) / alpha, (expected - beta) / alpha,
                               rtol=1e-6, atol=1e-6 * np.abs(_TEACHER.y_test).max())
    assert model.diagnostics_["reliable"] == _REFERENCE.diagnostics_["reliable"]


def test_a_general_linear_map_of_the_inputs_reaches_the_same_test_error():
    """x -> A x with cond(A) = 1e4: not exact (the Cholesky frame rotates), but equally good."""
    t = make_teacher(100_000, 5, 2, "tanh", weight_scale=1.5, random_state=5, n_test=10_000)
    rng = np.random.default_rng(2)
    U, _, Vt = np.linalg.svd(rng.standard_normal((5, 5)))
    A = U @ np.diag(np.logspace(0, -4, 5)) @ Vt
    plain = LiftRegressor(2, activation="tanh", random_state=0, max_rows=30_000).fit(t.X, t.y)
    mapped = LiftRegressor(2, activation="tanh", random_state=0, max_rows=30_000).fit(t.X @ A.T, t.y)
    errors = [np.mean((m.predict(X) - t.y_test) ** 2) for m, X in ((plain, t.X_test), (mapped, t.X_test @ A.T))]
    assert abs(errors[0] - errors[1]) < 0.1 * t.noise_var
    assert max(errors) < 1.1 * t.noise_var
