"""Gauss-Newton training (`train_two_layer(optimizer="gauss_newton")`): its Jacobian against finite differences, a
frozen first layer against scikit-learn's weighted ridge, stationarity, and the low-noise valley where L-BFGS stalls."""

import numpy as np
import pytest
from scipy.optimize import approx_fprime
from sklearn.linear_model import Ridge

import nnlift._gauss_newton as gn
from nnlift import LiftClassifier
from nnlift._training import TwoLayerParams, loss_and_grad, predict_two_layer, random_init, train_two_layer
from nnlift.activations import get_activation
from nnlift.baselines import BackpropClassifier, BackpropRegressor


def _problem(n=200, d=4, k=3, outputs=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    truth = random_init(d, k, outputs, rng)
    truth = TwoLayerParams(2 * truth.first_layer, rng.uniform(-0.5, 0.5, k), truth.coef, truth.intercept)
    Y = predict_two_layer(truth, X, "tanh")
    return X, Y + 0.05 * rng.standard_normal(Y.shape), rng.uniform(0.2, 3.0, n)


def _residuals(X, Y, weight, params, free, alpha):
    vector = np.concatenate([np.ravel(p) for p in params])
    masks = np.concatenate([np.ravel(m) for m in free])
    return gn._Residuals(X, Y, weight, vector, [np.shape(p) for p in params], masks, alpha,
                         get_activation("tanh")), vector[masks]


def test_the_jacobian_equals_finite_differences_and_its_operator_the_dense_matrix():
    X, Y, weight = _problem(n=40)
    init = random_init(4, 3, 2, 1)
    params = (init.first_layer, init.bias + 0.1, init.coef, init.intercept + 0.2)
    free = [np.ones((4, 3), bool), np.array([True, False, True]), np.ones((3, 2), bool), np.array([False, True])]
    residuals, v = _residuals(X, Y, weight / weight.mean(), params, free, alpha=0.3)
    dense = residuals.jacobian(v)
    numeric = np.array([approx_fprime(v, lambda u, i=i: residuals(u)[i], 1e-7) for i in range(dense.shape[0])])
    np.testing.assert_allclose(dense, numeric, atol=2e-6)
    operator = residuals._operator(*_hidden(X, residuals, v), dense.shape)
    probe = np.random.default_rng(2)
    for _ in range(3):
        u, w = probe.standard_normal(dense.shape[1]), probe.standard_normal(dense.shape[0])
        np.testing.assert_allclose(operator.matvec(u), dense @ u, atol=1e-12)
        np.testing.assert_allclose(operator.rmatvec(w), dense.T @ w, atol=1e-12)


def test_the_operator_keeps_the_point_it_was_built_at(monkeypatch):
    """scipy evaluates trial points between building the Jacobian and using it (a rejected step keeps it)."""
    X, Y, weight = _problem(n=40)
    init = random_init(4, 3, 2, 1)
    monkeypatch.setattr(gn, "DENSE_JACOBIAN_ENTRIES", 0)
    residuals, v = _residuals(X, Y, None, (init.first_layer, init.bias, init.coef, init.intercept),
                              [np.ones((4, 3), bool), np.ones(3, bool), np.ones((3, 2), bool), np.ones(2, bool)], 0.0)
    operator = residuals.jacobian(v)
    u = np.random.default_rng(0).standard_normal(v.size)
    before = operator.matvec(u)
    residuals(v + 0.5)
    np.testing.assert_array_equal(operator.matvec(u), before)


def test_the_dense_jacobian_has_only_the_free_columns_and_penalty_rows():
    """A frozen first layer under a penalty: no columns and no penalty rows for it (its penalty is a constant)."""
    X, Y, weight = _problem(n=40)
    init = random_init(4, 3, 2, 1)
    params = (init.first_layer, init.bias, init.coef, init.intercept)
    free = [np.zeros((4, 3), bool), np.ones(3, bool), np.ones((3, 2), bool), np.ones(2, bool)]
    residuals, v = _residuals(X, Y, None, params, free, alpha=0.5)
    assert residuals.jacobian(v).shape == (40 * 2 + 6, 3 + 6 + 2)
    assert residuals.frozen_penalty == pytest.approx(0.25 * np.sum(init.first_layer**2))


def _hidden(X, residuals, v):
    W, b, C, _ = residuals.unpack(v)
    U = X @ W + b
    return np.tanh(U), 1 - np.tanh(U) ** 2, C


def test_a_frozen_first_layer_gives_scikit_learns_weighted_ridge_output_layer():
    """With W and b frozen the objective is linear least squares in (c, c0): F = mean_i w_i r_i^2 + alpha/2 ||c||^2
    is, times n, scikit-learn's Ridge(alpha = n alpha / 2) with the weights normalised to mean 1."""
    X, Y, weight = _problem(outputs=1)
    y, alpha, n = Y[:, 0], 0.02, len(Y)
    init = random_init(4, 3, None, 5)
    fitted, history = train_two_layer(X, y, init, "tanh", optimizer="gauss_newton", alpha=alpha,
                                      sample_weight=weight, train_mask={"first_layer": False, "bias": False},
                                      tol=1e-14)
    H = np.tanh(X @ init.first_layer + init.bias)
    ridge = Ridge(alpha=n * alpha / 2, tol=1e-14).fit(H, y, sample_weight=weight / weight.mean())
    np.testing.assert_allclose(fitted.coef, ridge.coef_, rtol=1e-8)
    assert fitted.intercept == pytest.approx(ridge.intercept_, rel=1e-8)
    np.testing.assert_array_equal(fitted.first_layer, init.first_layer)
    assert history["converged"]


@pytest.mark.parametrize("outputs", [None, 2])
def test_it_stops_at_a_stationary_point_no_higher_than_lbfgs(outputs):
    X, Y, weight = _problem(outputs=outputs or 1)
    Y = Y[:, 0] if outputs is None else Y
    init = random_init(4, 3, outputs, 7)
    kwargs = {"alpha": 1e-3, "sample_weight": weight}
    fitted, history = train_two_layer(X, Y, init, "tanh", optimizer="gauss_newton", tol=1e-12, **kwargs)
    value, grad = loss_and_grad(fitted, X, Y, "tanh", **kwargs)
    assert max(np.abs(np.ravel(g)).max() for g in (grad.first_layer, grad.bias, grad.coef, grad.intercept)) < 1e-7
    assert history["loss"][-1] == pytest.approx(value, rel=1e-12)
    assert history["initial_loss"] == pytest.approx(loss_and_grad(init, X, Y, "tanh", **kwargs)[0], rel=1e-12)
    assert np.all(np.diff(history["loss"]) <= 1e-15) and history["converged"]
    lbfgs, _ = train_two_layer(X, Y, init, "tanh", max_iter=2000, tol=1e-12, **kwargs)
    assert value <= loss_and_grad(lbfgs, X, Y, "tanh", **kwargs)[0] + 1e-12


def test_the_matrix_free_path_reaches_the_dense_paths_optimum(monkeypatch):
    X, Y, weight = _problem()
    init = random_init(4, 3, 2, 3)
    dense, _ = train_two_layer(X, Y, init, "tanh", optimizer="gauss_newton", tol=1e-12, sample_weight=weight)
    monkeypatch.setattr(gn, "DENSE_JACOBIAN_ENTRIES", 0)
    free, history = train_two_layer(X, Y, init, "tanh", optimizer="gauss_newton", tol=1e-12, sample_weight=weight)
    assert history["converged"]
    dense_loss = loss_and_grad(dense, X, Y, "tanh", sample_weight=weight)[0]
    assert loss_and_grad(free, X, Y, "tanh", sample_weight=weight)[0] == pytest.approx(dense_loss, rel=1e-6)
    np.testing.assert_allclose(predict_two_layer(free, X, "tanh"), predict_two_layer(dense, X, "tanh"), atol=1e-4)


def test_it_reaches_the_optimum_of_a_low_noise_valley_where_lbfgs_stalls():
    """Regression (identify, softplus d = 10 k = 5, |a| = 1.5, queries x = 4 z, sigma = 0.05): the standardised loss
    is ~1e-5 and its valley ill-conditioned; L-BFGS with identify's relative test ended above the optimum, which the
    Gauss-Newton polish from its end point reaches: L-BFGS reports convergence at 4.8x the optimum's loss."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((10, 5))
    truth = TwoLayerParams(1.5 * A / np.linalg.norm(A, axis=0), rng.uniform(-0.5, 0.5, 5),
                           rng.choice([-1, 1], 5) * rng.uniform(0.5, 1.5, 5), 0.0)
    X = 4 * rng.standard_normal((700, 10))
    y = predict_two_layer(truth, X, "softplus") + 0.05 * rng.standard_normal(700)
    y = (y - y.mean()) / y.std()
    init = random_init(10, 5, None, 2)
    start_loss = np.mean((predict_two_layer(init, X / 4, "softplus") - y) ** 2)
    lbfgs, history = train_two_layer(X / 4, y, init, "softplus", max_iter=1000, tol=1e-8 * start_loss)
    polished, polish = train_two_layer(X / 4, y, lbfgs, "softplus", optimizer="gauss_newton", tol=1e-10)
    assert history["converged"] and polish["converged"]
    assert polish["loss"][-1] < 0.25 * history["loss"][-1]
    _, grad = loss_and_grad(polished, X / 4, y, "softplus")
    assert np.abs(grad.first_layer).max() < 1e-9


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"loss": "logistic"}, "loss='mse'"),
    ({"lr": 0.5}, "no lr"),
    ({"batch_size": 10}, "batch_size"),
])
def test_what_it_cannot_do_is_refused(kwargs, match):
    X, Y, _ = _problem()
    y = (Y[:, 0] > 0).astype(float) if kwargs.get("loss") == "logistic" else Y[:, 0]
    with pytest.raises(ValueError, match=match):
        train_two_layer(X, y, random_init(4, 3, None, 0), "tanh", optimizer="gauss_newton", **kwargs)


def test_a_budget_of_zero_or_one_evaluation():
    X, Y, _ = _problem()
    init = random_init(4, 3, 2, 0)
    same, history = train_two_layer(X, Y, init, "tanh", optimizer="gauss_newton", max_iter=0)
    np.testing.assert_array_equal(same.coef, init.coef)
    assert history["n_iter"] == 0 and not history["converged"]
    one, history = train_two_layer(X, Y, init, "tanh", optimizer="gauss_newton", max_iter=1)
    assert history["n_iter"] == 1 and history["loss"][0] < history["initial_loss"]


def test_the_regressor_trains_with_it_and_the_classifiers_refuse_it():
    X, Y, _ = _problem()
    model = BackpropRegressor(3, activation="tanh", optimizer="gauss_newton", random_state=0).fit(X, Y[:, 0])
    assert model.score(X, Y[:, 0]) > 0.99
    for classifier in (BackpropClassifier(3, optimizer="gauss_newton"), LiftClassifier(3, optimizer="gauss_newton")):
        with pytest.raises(ValueError, match="optimizer"):
            classifier.fit(X, Y[:, 0] > 0)


def test_verbose_says_gauss_newton_converged(capsys):
    X, Y, _ = _problem()
    _, history = train_two_layer(X, Y, random_init(4, 3, 2, 0), "tanh", optimizer="gauss_newton", verbose=1)
    assert history["converged"]
    assert f"Gauss-Newton training: converged after {history['n_iter']} of 200 iterations" in capsys.readouterr().err
