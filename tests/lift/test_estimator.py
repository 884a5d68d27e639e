"""LiftRegressor / LiftClassifier end to end on planted teachers, plus bad input and sklearn conformance."""

import warnings

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from nnlift import LiftClassifier, LiftRegressor
from nnlift.datasets import make_teacher
from nnlift.lift import NNLiftWarning
from nnlift.metrics import weight_recovery


@pytest.fixture(scope="module")
def tanh_teacher():
    return make_teacher(200_000, 10, 3, "tanh", noise=0.05, weight_scale=2.0, random_state=0, n_test=20_000)


def test_tensor_start_recovers_first_layer_and_finetune_reaches_noise_floor(tanh_teacher):
    t = tanh_teacher
    start = LiftRegressor(3, activation="tanh", finetune=False, random_state=0).fit(t.X, t.y)
    assert weight_recovery(t.first_layer, start.first_layer_).min > 0.97
    tuned = LiftRegressor(3, activation="tanh", random_state=0, max_rows=50_000).fit(t.X, t.y)
    assert weight_recovery(t.first_layer, tuned.first_layer_).min > 0.999
    mse = np.mean((tuned.predict(t.X_test) - t.y_test) ** 2)
    assert mse < 1.1 * t.noise_var
    diag = tuned.diagnostics_
    assert diag["order"] == 3 and diag["samples_needed"] < len(t.y) and diag["warnings"] == []
    assert diag["reliable"] and diag["winner"] == "tensor" and diag["split_half_agreement"] > 0.99
    assert diag["finetune"]["final_loss"] <= diag["finetune"]["initial_loss"]


def test_same_seed_same_model_and_inputs_untouched(tanh_teacher):
    X, y = tanh_teacher.X[:30_000].copy(), tanh_teacher.y[:30_000].copy()
    X0, y0 = X.copy(), y.copy()
    a = LiftRegressor(3, activation="tanh", finetune=False, random_state=3).fit(X, y)
    b = LiftRegressor(3, activation="tanh", finetune=False, random_state=3).fit(X, y)
    np.testing.assert_array_equal(a.first_layer_, b.first_layer_)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)


def test_too_few_samples_make_an_unreliable_start_and_say_why():
    t = make_teacher(2_000, 10, 3, "sigmoid", random_state=1)
    with pytest.warns(NNLiftWarning, match="split-half agreement"):
        model = LiftRegressor(3, finetune=False, random_state=0).fit(t.X, t.y)
    assert model.diagnostics_["samples_needed"] > 2_000
    assert model.diagnostics_["reliable"] is False and model.diagnostics_["split_half_agreement"] < 0.9


@pytest.mark.parametrize(
    ("X", "y", "message"),
    [
        (np.ones(50), np.ones(50), "2D array"),
        (np.random.default_rng(0).standard_normal((50, 3)), np.ones(49), "inconsistent numbers of samples"),
        (np.full((50, 3), np.nan), np.ones(50), "NaN"),
    ],
)
def test_bad_input_is_refused(X, y, message):
    with pytest.raises(ValueError, match=message):
        LiftRegressor(2).fit(X, y)


def test_more_hidden_units_than_features_is_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="n_hidden=5 exceeds n_features=3"):
        LiftRegressor(5).fit(rng.standard_normal((500, 3)), rng.standard_normal(500))


def test_too_few_rows_for_any_moment_is_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="n_samples=10 is too few"):
        LiftRegressor(2).fit(rng.standard_normal((10, 5)), rng.standard_normal(10))


def test_classifier_on_a_planted_binary_teacher():
    t = make_teacher(60_000, 8, 3, "tanh", noise=0.0, weight_scale=2.0, random_state=2, n_test=5_000)
    labels, test_labels = (t.y > np.median(t.y)).astype(int), (t.y_test > np.median(t.y)).astype(int)
    model = LiftClassifier(3, activation="tanh", random_state=0, max_rows=20_000).fit(t.X, labels)
    assert model.score(t.X_test, test_labels) > 0.95
    np.testing.assert_allclose(model.predict_proba(t.X_test[:5]).sum(axis=1), 1.0)


def test_multiclass_labels_are_kept():
    t = make_teacher(20_000, 6, 2, "tanh", noise=0.0, random_state=3)
    labels = np.digitize(t.y, np.quantile(t.y, [1 / 3, 2 / 3]))
    names = np.array(["low", "mid", "high"])[labels]
    model = LiftClassifier(2, activation="tanh", random_state=0, max_iter=50).fit(t.X, names)
    assert set(model.predict(t.X[:200])) <= {"low", "mid", "high"}
    assert model.score(t.X, names) > 0.8


def _expected_failures(estimator) -> dict:
    """Checks NN-LIFT cannot pass, and why."""
    return {"check_sample_weight_equivalence_on_dense_data":
            "repeating a row is not the same as weighting it: the held-out split, the score's sample and the random "
            "starts are drawn per row; the weighted steps themselves are checked against repeated rows in "
            "test_sample_weight.py"}


@parametrize_with_checks([LiftRegressor(2, max_iter=20, random_state=0),
                          LiftClassifier(2, max_iter=20, random_state=0)], expected_failed_checks=_expected_failures)
def test_sklearn_conformance(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NNLiftWarning)
        check(estimator)


def test_correlated_gaussian_inputs_are_handled_by_the_fitted_score():
    """x ~ N(mu, Sigma): the score uses the estimated mean/covariance, weights come back in x's coordinates."""
    rng = np.random.default_rng(0)
    d, k, n = 8, 3, 300_000
    L = np.eye(d) + 0.3 * rng.standard_normal((d, d))
    mu = rng.standard_normal(d)
    X = rng.standard_normal((n, d)) @ L.T + mu
    W = rng.standard_normal((d, k))
    W = np.linalg.solve(L.T, 1.5 * W / np.linalg.norm(W, axis=0))
    b = rng.uniform(-1, 1, k) - mu @ W
    y = np.tanh(X @ W + b) @ np.array([1.0, -0.8, 1.2]) + 0.05 * rng.standard_normal(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NNLiftWarning)
        start = LiftRegressor(k, activation="tanh", finetune=False, random_state=0).fit(X, y)
        tuned = LiftRegressor(k, activation="tanh", random_state=0, max_rows=30_000).fit(X, y)
    assert weight_recovery(W, start.first_layer_).min > 0.9
    assert weight_recovery(W, tuned.first_layer_).min > 0.999


def test_fourier_scale_bias_path_uses_unit_whitened_columns_and_the_same_directions(tanh_teacher):
    t = tanh_teacher
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NNLiftWarning)
        fourier = LiftRegressor(3, activation="tanh", scale_bias="fourier", finetune=False, random_state=0)
        fourier.fit(t.X, t.y)
        least_squares = LiftRegressor(3, activation="tanh", finetune=False, random_state=0).fit(t.X, t.y)
    norms = np.linalg.norm(fourier.first_layer_, axis=0)
    np.testing.assert_allclose(norms, 1.0, atol=0.01)  # the paper's unit columns (cov ≈ I here)
    directions = fourier.first_layer_ / norms
    ls_directions = least_squares.first_layer_ / np.linalg.norm(least_squares.first_layer_, axis=0)
    np.testing.assert_allclose(np.abs(np.sum(directions * ls_directions, axis=0)), 1.0, atol=1e-12)
    assert np.all(np.abs(fourier.bias_) <= 1.0 + 0.01)
    assert np.isfinite(fourier.diagnostics_["scale_bias_r2"])


def test_out_of_core_inputs_give_the_in_memory_model(tanh_teacher, tmp_path):
    import dask.array as da
    import torch

    X, y = tanh_teacher.X[:60_000], tanh_teacher.y[:60_000]
    params = {"activation": "tanh", "random_state": 0, "max_iter": 30, "max_rows": 20_000}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NNLiftWarning)
        reference = LiftRegressor(3, **params).fit(X, y)
        np.save(tmp_path / "X.npy", X)
        np.save(tmp_path / "y.npy", y)
        mapped = LiftRegressor(3, **params).fit(np.load(tmp_path / "X.npy", mmap_mode="r"),
                                                np.load(tmp_path / "y.npy", mmap_mode="r"))
        dask = LiftRegressor(3, **params).fit(da.from_array(X, chunks=(7_000, 10)), da.from_array(y, chunks=7_000))
        tensor = LiftRegressor(3, **params).fit(torch.from_numpy(X), torch.from_numpy(y))
    for model in (mapped, dask, tensor):
        np.testing.assert_allclose(model.initial_params_.first_layer, reference.initial_params_.first_layer,
                                   atol=1e-8)
        np.testing.assert_allclose(model.predict(X[:100]), reference.predict(X[:100]), atol=1e-6)
        np.testing.assert_allclose(model.diagnostics_["component_agreement"],
                                   reference.diagnostics_["component_agreement"], atol=1e-9)
        assert model.diagnostics_["reliable"] == reference.diagnostics_["reliable"]


def test_two_pass_first_layer(tanh_teacher):
    t = tanh_teacher
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NNLiftWarning)
        model = LiftRegressor(3, activation="tanh", finetune=False, random_state=0, cp_options="two_pass")
        model.fit(t.X, t.y)
    assert model.diagnostics_["moment_passes"] == 2
    assert model.diagnostics_["tensor"][0]["lift"]["kept"] == "lifted"
    assert not any("singular-value gap" in message for message in model.diagnostics_["warnings"])
    assert weight_recovery(t.first_layer, model.first_layer_).min > 0.95
    with pytest.raises(ValueError, match="'two_pass'"):
        LiftRegressor(3, cp_options="three_pass").fit(t.X, t.y)
