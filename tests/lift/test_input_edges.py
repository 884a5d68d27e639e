"""Input edges: declared parameter constraints, torch tensors that track gradients, Dask arrays of unknown chunk
sizes, out-of-core classifiers, values near the float64 limits."""

import warnings

import dask.array as da
import numpy as np
import pytest
import torch
from sklearn.utils._param_validation import InvalidParameterError

from nnlift import LiftClassifier, LiftRegressor
from nnlift.baselines import BackpropClassifier, BackpropRegressor
from nnlift.datasets import make_teacher
from nnlift.lift import NNLiftWarning


@pytest.fixture(scope="module")
def teacher():
    return make_teacher(20_000, 5, 2, "tanh", weight_scale=2.0, random_state=0, n_test=2_000)


@pytest.mark.parametrize("estimator", [LiftRegressor, LiftClassifier, BackpropRegressor, BackpropClassifier])
@pytest.mark.parametrize(("parameter", "value"), [("alpha", -1), ("max_iter", -5), ("max_iter", 0),
                                                  ("n_hidden", 0), ("activation", "foo"), ("optimizer", "sgd")])
def test_every_parameter_is_checked_against_its_declared_constraint(teacher, estimator, parameter, value):
    labels = (teacher.y > 0).astype(int)
    with pytest.raises(InvalidParameterError, match=rf"'{parameter}' parameter of {estimator.__name__}") as error:
        estimator(**{"n_hidden": 2, parameter: value}).fit(teacher.X[:500], labels[:500])
    message = str(error.value)
    assert f"Got {value!r} instead" in message
    assert "1e-07" not in message and "1e-06" not in message  # only the value the user set is quoted


@pytest.mark.parametrize(("parameter", "value"), [("order", 5), ("score_function", "nope"), ("scale_bias", "grid"),
                                                  ("cp_options", "three_pass"), ("finetune_alpha", -1e-3),
                                                  ("dtype", "float16"), ("max_rows", 0)])
def test_lift_specific_parameters_are_checked(teacher, parameter, value):
    with pytest.raises(InvalidParameterError, match=rf"'{parameter}' parameter of LiftRegressor"):
        LiftRegressor(2, **{parameter: value}).fit(teacher.X, teacher.y)


def test_tensors_that_track_gradients_are_accepted_and_left_alone(teacher):
    X = torch.tensor(teacher.X, requires_grad=True)
    y = torch.tensor(teacher.y)
    labels = torch.tensor((teacher.y > 0).astype(np.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NNLiftWarning)
        regressor = LiftRegressor(2, activation="tanh", random_state=0, max_iter=20).fit(X, y)
        classifier = LiftClassifier(2, activation="tanh", random_state=0, max_iter=20).fit(X, labels)
        reference = LiftClassifier(2, activation="tanh", random_state=0, max_iter=20).fit(teacher.X, labels.numpy())
    np.testing.assert_allclose(regressor.predict(X), regressor.predict(teacher.X))
    # a tensor is streamed in chunks, so its start differs from the in-memory one by rounding (6e-14 on one machine),
    # which 20 L-BFGS steps grew to 7e-8 in logits of size ~20: equal to 1e-8 of the logits' scale
    scale = np.abs(reference.decision_function(teacher.X)).max()
    np.testing.assert_allclose(classifier.initial_params_.first_layer, reference.initial_params_.first_layer,
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(classifier.decision_function(X), reference.decision_function(teacher.X),
                               rtol=0, atol=1e-8 * scale)
    assert X.requires_grad and X.grad is None
    np.testing.assert_array_equal(X.detach().numpy(), teacher.X)


@pytest.mark.parametrize("estimator", [LiftRegressor, LiftClassifier])
def test_dask_arrays_of_unknown_chunk_sizes_say_compute_chunk_sizes(teacher, estimator):
    X = da.from_array(teacher.X, chunks=5_000)
    keep = X[:, 0] > -10  # every row, but Dask cannot know how many
    labels = da.from_array((teacher.y > 0).astype(int), chunks=5_000)
    y = labels if estimator is LiftClassifier else da.from_array(teacher.y, chunks=5_000)
    with pytest.raises(ValueError, match=r"compute_chunk_sizes\(\)"):
        estimator(2, activation="tanh").fit(X[keep], y[keep])


def test_classifier_streams_a_dask_array_like_the_in_memory_fit(teacher):
    labels = (teacher.y > np.median(teacher.y)).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NNLiftWarning)
        memory = LiftClassifier(2, activation="tanh", random_state=0, max_iter=20).fit(teacher.X, labels)
        lazy = LiftClassifier(2, activation="tanh", random_state=0, max_iter=20).fit(
            da.from_array(teacher.X, chunks=4_000), da.from_array(labels, chunks=4_000))
    np.testing.assert_allclose(lazy.decision_function(teacher.X_test), memory.decision_function(teacher.X_test),
                               atol=1e-6)
    np.testing.assert_array_equal(lazy.classes_, memory.classes_)


def test_values_near_the_float64_limits_fit_without_numpy_warnings(teacher):
    """y x 1e300 and columns at 1e-150 / 1e150: the frame's power-of-two units keep every square finite."""
    scales = np.array([1e-150, 1.0, 1e150, 1.0, 1e-3])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        plain = LiftRegressor(2, activation="tanh", random_state=0, max_iter=20).fit(teacher.X, teacher.y)
        huge = LiftRegressor(2, activation="tanh", random_state=0, max_iter=20).fit(teacher.X * scales,
                                                                                    teacher.y * 1e300)
        predictions = huge.predict(teacher.X_test * scales)
    np.testing.assert_allclose(predictions / 1e300, plain.predict(teacher.X_test), rtol=1e-6, atol=1e-9)
