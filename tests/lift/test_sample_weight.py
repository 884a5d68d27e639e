"""sample_weight: each weighted step equals the same step on rows repeated by integer weights, and weights help."""

import warnings

import numpy as np
import pytest
import torch

from nnlift import LiftClassifier, LiftRegressor
from nnlift._training import TwoLayerParams, loss_and_grad, random_init, train_two_layer
from nnlift.baselines import BackpropRegressor
from nnlift.datasets import make_teacher
from nnlift.lift import NNLiftWarning
from nnlift.lift.frame import fit_frame
from nnlift.lift.output_layer import fit_output_logistic, fit_output_ridge_streaming, hidden_features
from nnlift.lift.reliability import residual_structure
from nnlift.lift.scale_bias import fit_scale_bias
from nnlift.moments import make_moment
from nnlift.scores import GaussianScore, NonGaussianInputWarning


@pytest.fixture(scope="module")
def weighted_rows():
    """Rows, targets, integer weights 1..3 and the same rows repeated by those weights."""
    t = make_teacher(1_500, 4, 2, "tanh", weight_scale=2.0, random_state=0)
    weight = np.random.default_rng(1).integers(1, 4, size=len(t.y)).astype(float)
    repeat = np.repeat(np.arange(len(t.y)), weight.astype(int))
    return t.X, t.y, weight, t.X[repeat], t.y[repeat]


def test_weighted_frame_equals_the_frame_of_repeated_rows(weighted_rows):
    X, y, weight, X_rep, y_rep = weighted_rows
    weighted = fit_frame(X, y, sample_weight=weight * len(y) / weight.sum())
    repeated = fit_frame(X_rep, y_rep)
    np.testing.assert_allclose(weighted.x_mean, repeated.x_mean, atol=1e-12)
    np.testing.assert_allclose(weighted.y_mean, repeated.y_mean, atol=1e-12)
    # sums over sum(w) rows divide by n - 1 instead of sum(w) - 1: the scales differ by that ratio only
    n, total = len(y), weight.sum()
    ratio = np.sqrt((total / (total - 1)) / (n / (n - 1)))
    np.testing.assert_allclose(weighted.y_scale * ratio, repeated.y_scale, rtol=1e-12)
    np.testing.assert_allclose(weighted.x_map, repeated.x_map * ratio, rtol=1e-10, atol=1e-12)


def test_weighted_moment_equals_the_moment_of_repeated_rows(weighted_rows):
    X, y, weight, X_rep, y_rep = weighted_rows
    d = X.shape[1]
    normalised = weight * len(y) / weight.sum()
    centred = normalised * (y - normalised @ y / len(y))  # the estimator's moment target: w (t - weighted mean)
    V = np.random.default_rng(2).standard_normal((d, 3))
    images = []
    for rows, target in ((X, centred), (X_rep, y_rep)):
        moment = make_moment(rows, target, order=3, score=GaussianScore(np.zeros(d), np.eye(d)))
        images.append(moment.contract(V))
    np.testing.assert_allclose(images[0], images[1], rtol=1e-9, atol=1e-12)


def test_weighted_output_layers_equal_repeated_rows(weighted_rows):
    X, y, weight, X_rep, y_rep = weighted_rows
    W, b = np.random.default_rng(3).standard_normal((4, 2)), np.zeros(2)
    weighted = fit_output_ridge_streaming(X, y, W, b, "tanh", 0.1, sample_weight=weight, chunk_rows=400)
    repeated = fit_output_ridge_streaming(X_rep, y_rep, W, b, "tanh", 0.1)
    np.testing.assert_allclose(weighted[0], repeated[0], rtol=1e-10)
    np.testing.assert_allclose(weighted[1], repeated[1], rtol=1e-10, atol=1e-12)
    labels, labels_rep = (y > 0).astype(int), (y_rep > 0).astype(int)
    coef_w, icpt_w = fit_output_logistic(hidden_features(X, W, b, "tanh"), labels, 1e-3, sample_weight=weight)
    coef_r, icpt_r = fit_output_logistic(hidden_features(X_rep, W, b, "tanh"), labels_rep, 1e-3)
    np.testing.assert_allclose(coef_w, coef_r, rtol=1e-3)
    np.testing.assert_allclose(icpt_w, icpt_r, rtol=1e-3, atol=1e-4)


def test_weighted_scale_bias_equals_repeated_rows(weighted_rows):
    X, y, weight, X_rep, y_rep = weighted_rows
    directions = np.linalg.qr(np.random.default_rng(4).standard_normal((4, 2)))[0]
    weighted = fit_scale_bias(X, y, directions, "tanh", sample_weight=weight)
    repeated = fit_scale_bias(X_rep, y_rep, directions, "tanh")
    np.testing.assert_allclose(weighted.scale, repeated.scale, rtol=1e-5)
    np.testing.assert_allclose(weighted.coef, repeated.coef, rtol=1e-5)
    np.testing.assert_allclose(weighted.r2, repeated.r2, rtol=1e-8)


def test_weighted_training_objective_and_fit_equal_repeated_rows(weighted_rows):
    X, y, weight, X_rep, y_rep = weighted_rows
    init = random_init(4, 3, None, np.random.default_rng(5))
    value_w, grad_w = loss_and_grad(init, X, y, "tanh", alpha=1e-3, sample_weight=weight)
    value_r, grad_r = loss_and_grad(init, X_rep, y_rep, "tanh", alpha=1e-3)
    assert value_w == pytest.approx(value_r, rel=1e-12)
    np.testing.assert_allclose(grad_w.first_layer, grad_r.first_layer, rtol=1e-9, atol=1e-13)
    fitted_w, _ = train_two_layer(X, y, init, "tanh", max_iter=30, sample_weight=weight)
    fitted_r, _ = train_two_layer(X_rep, y_rep, init, "tanh", max_iter=30)
    np.testing.assert_allclose(fitted_w.coef, fitted_r.coef, rtol=1e-5, atol=1e-7)


def test_weighted_residual_structure_is_the_repeated_rows_statistic():
    """The weighted share of E[r He_1(v^T z)] equals the share on rows repeated by integer weights (the order-1
    direction is a closed form, so both pick the same v); all-one weights are no weights."""
    rng = np.random.default_rng(6)
    Z = rng.standard_normal((4_000, 3))
    target = np.tanh(Z[:, 0]) + 0.1 * rng.standard_normal(4_000)
    weight = rng.integers(1, 4, size=4_000).astype(float)
    params = TwoLayerParams(np.zeros((3, 1)), np.zeros(1), np.zeros(1), 0.0)
    train, held = slice(0, 2_000), slice(2_000, None)
    normalised = tuple(weight[part] * 2_000 / weight[part].sum() for part in (train, held))
    weighted = residual_structure(params, (Z[train], target[train]), (Z[held], target[held]), "tanh", "mse",
                                  random_state=0, weights=normalised)
    repeat = [np.repeat(np.arange(2_000), weight[part].astype(int)) for part in (train, held)]
    repeated = residual_structure(params, (Z[train][repeat[0]], target[train][repeat[0]]),
                                  (Z[held][repeat[1]], target[held][repeat[1]]), "tanh", "mse", random_state=0)
    assert weighted["order"] == repeated["order"] == 1  # tanh(z_0) is first-order signal that the zero net misses
    assert weighted["explained"] == pytest.approx(repeated["explained"], rel=1e-10)
    ones = tuple(np.ones(2_000) for _ in range(2))
    plain = residual_structure(params, (Z[train], target[train]), (Z[held], target[held]), "tanh", "mse",
                               random_state=0)
    assert residual_structure(params, (Z[train], target[train]), (Z[held], target[held]), "tanh", "mse",
                              random_state=0, weights=ones) == plain


def test_inverse_variance_weights_beat_no_weights_on_heteroscedastic_noise():
    """Half the rows carry 40x the noise: weights 1/sigma^2 make the fit closer to the teacher (noise-free test)."""
    t = make_teacher(60_000, 6, 3, "tanh", weight_scale=2.0, noise=0.0, random_state=7, n_test=5_000)
    sigma = np.where(np.arange(len(t.y)) % 2 == 0, 0.05, 2.0)
    y = t.y + sigma * np.random.default_rng(8).standard_normal(len(t.y))
    errors = {}
    for name, weight in (("plain", None), ("weighted", 1 / sigma**2)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NNLiftWarning)
            model = LiftRegressor(3, activation="tanh", random_state=0, max_iter=100).fit(t.X, y,
                                                                                          sample_weight=weight)
        errors[name] = float(np.mean((model.predict(t.X_test) - t.y_test) ** 2))
    assert errors["weighted"] < 0.5 * errors["plain"]


def test_zero_weights_drop_rows_and_equal_weights_are_no_weights():
    t = make_teacher(20_000, 5, 2, "tanh", weight_scale=2.0, random_state=9, n_test=1_000)
    extra = np.random.default_rng(10).standard_normal((3_000, 5))
    X = np.vstack([t.X, extra])
    y = np.concatenate([t.y, np.full(3_000, 100.0)])
    weight = np.concatenate([np.full(len(t.y), 2.5), np.zeros(3_000)])
    kept = np.array(weight)
    plain = LiftRegressor(2, activation="tanh", random_state=0, max_iter=30).fit(t.X, t.y)
    weighted = LiftRegressor(2, activation="tanh", random_state=0, max_iter=30).fit(X, y, sample_weight=weight)
    np.testing.assert_array_equal(plain.predict(t.X_test), weighted.predict(t.X_test))
    np.testing.assert_array_equal(weight, kept)  # the caller's weights are not touched
    assert not plain.diagnostics_["weighted"]


def test_classifier_weights_shift_the_decision_towards_the_heavy_class():
    t = make_teacher(30_000, 5, 2, "tanh", weight_scale=2.0, random_state=11, n_test=5_000)
    labels = (t.y > np.quantile(t.y, 0.5)).astype(int)
    test_labels = (t.y_test > np.quantile(t.y, 0.5)).astype(int)
    heavy = np.where(labels == 1, 10.0, 1.0)
    with warnings.catch_warnings():  # weights by label make the weighted inputs a non-Gaussian mixture: warned
        warnings.simplefilter("ignore", NNLiftWarning)
        warnings.simplefilter("ignore", NonGaussianInputWarning)
        plain = LiftClassifier(2, activation="tanh", random_state=0, max_iter=50).fit(t.X, labels)
        weighted = LiftClassifier(2, activation="tanh", random_state=0, max_iter=50).fit(t.X, labels,
                                                                                         sample_weight=heavy)
    recall = [np.mean(model.predict(t.X_test)[test_labels == 1] == 1) for model in (plain, weighted)]
    assert recall[1] > recall[0] and weighted.diagnostics_["weighted"]


def test_backprop_weights_equal_repeated_rows(weighted_rows):
    X, y, weight, X_rep, y_rep = weighted_rows
    fits = [BackpropRegressor(3, activation="tanh", max_iter=40, random_state=0).fit(X, y, sample_weight=weight),
            BackpropRegressor(3, activation="tanh", max_iter=40, random_state=0).fit(X_rep, y_rep)]
    np.testing.assert_allclose(fits[0].predict(X[:100]), fits[1].predict(X[:100]), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(("weight", "message"), [
    (-np.ones(3_000), "(?i)negative"),
    (np.zeros(3_000), "non-zero"),
    (np.ones(10), "shape"),
])
def test_bad_weights_get_clear_errors(weight, message):
    t = make_teacher(3_000, 4, 2, "tanh", random_state=12)
    with pytest.raises(ValueError, match=message):
        LiftRegressor(2, activation="tanh").fit(t.X, t.y, sample_weight=weight)


def test_weights_with_out_of_core_rows_are_refused():
    t = make_teacher(3_000, 4, 2, "tanh", random_state=13)
    with pytest.raises(ValueError, match="in-memory X"):
        LiftRegressor(2, activation="tanh").fit(torch.tensor(t.X), torch.tensor(t.y), sample_weight=np.ones(3_000))
