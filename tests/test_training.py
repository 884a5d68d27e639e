"""The shared two-layer training loop against numpy/scikit-learn references and a planted teacher."""

import numpy as np
import pytest
from scipy import special
from sklearn.metrics import log_loss

from nnlift._training import TwoLayerParams, loss_and_grad, predict_two_layer, random_init, train_two_layer

D, K = 5, 2


def _teacher(n=1000, seed=0):
    """Noiseless sigmoid teacher with unit-norm first-layer columns and x ~ N(0, I_5)."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((D, K))
    W /= np.linalg.norm(W, axis=0)
    params = TwoLayerParams(W, np.array([0.3, -0.5]), np.array([1.2, -0.8]), 0.1)
    X = rng.standard_normal((n, D))
    return X, predict_two_layer(params, X, "sigmoid"), params


def _perturb(params, scale, seed):
    rng = np.random.default_rng(seed)
    return TwoLayerParams(*(np.asarray(v) + scale * rng.standard_normal(np.shape(v)) for v in
                            (params.first_layer, params.bias, params.coef, params.intercept)))


def _flat(params):
    return np.concatenate([np.ravel(v) for v in (params.first_layer, params.bias, params.coef, params.intercept)])


def _unflat(theta, like):
    parts, start = [], 0
    for v in (like.first_layer, like.bias, like.coef, like.intercept):
        size = np.size(v)
        parts.append(theta[start:start + size].reshape(np.shape(v)))
        start += size
    return TwoLayerParams(*parts)


def _numpy_objective(params, X, y, loss, alpha):
    """Independent reference: mean loss from numpy + alpha/2 (||W||^2 + ||c||^2)."""
    out = predict_two_layer(params, X, "sigmoid")
    if loss == "mse":
        data = np.mean((out - y) ** 2)
    elif loss == "logistic":
        data = np.mean(np.logaddexp(0.0, out) - y * out)
    else:
        data = np.mean(special.logsumexp(out, axis=1) - out[np.arange(len(y)), y])
    return data + 0.5 * alpha * (np.sum(params.first_layer**2) + np.sum(params.coef**2))


def _classification_problem(loss, n=60, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, D))
    if loss == "cross_entropy":
        return X, rng.integers(0, 3, n), random_init(D, 4, 3, rng)
    if loss == "logistic":
        return X, rng.integers(0, 2, n), random_init(D, 4, None, rng)
    return X, rng.standard_normal(n), random_init(D, 4, None, rng)


def test_started_at_truth_loss_is_zero_and_stays():
    X, y, true = _teacher()
    value, grad = loss_and_grad(true, X, y, "sigmoid")
    assert value < 1e-28 and np.abs(_flat(grad)).max() < 1e-13
    params, history = train_two_layer(X, y, true, "sigmoid", max_iter=10, tol=0.0)
    assert history["initial_loss"] < 1e-28 and max(history["loss"], default=0.0) < 1e-28
    np.testing.assert_allclose(_flat(params), _flat(true), atol=1e-12)


@pytest.mark.parametrize("loss", ["mse", "logistic", "cross_entropy"])
def test_gradient_matches_central_finite_differences(loss):
    X, y, params = _classification_problem(loss)
    params = _perturb(params, 0.3, seed=2)
    alpha = 0.05
    _, grad = loss_and_grad(params, X, y, "sigmoid", loss=loss, alpha=alpha)
    theta, h = _flat(params), 1e-6
    fd = np.empty_like(theta)
    for i in range(theta.size):
        step = np.zeros_like(theta)
        step[i] = h
        fd[i] = (_numpy_objective(_unflat(theta + step, params), X, y, loss, alpha)
                 - _numpy_objective(_unflat(theta - step, params), X, y, loss, alpha)) / (2 * h)
    np.testing.assert_allclose(_flat(grad), fd, rtol=1e-6, atol=1e-9)


def test_lbfgs_from_perturbed_truth_converges_back():
    X, y, true = _teacher()
    params, history = train_two_layer(X, y, _perturb(true, 0.05, seed=3), "sigmoid", max_iter=300, tol=1e-14)
    assert history["converged"] and history["n_iter"] == len(history["loss"]) < 300
    assert history["loss"][-1] < 1e-10 < history["initial_loss"]
    assert np.abs(_flat(params) - _flat(true)).max() < 1e-4


def test_fortran_ordered_init_is_accepted():
    X, y, true = _teacher(n=200)
    init = _perturb(true, 0.1, seed=6)
    fortran = TwoLayerParams(np.asfortranarray(init.first_layer), init.bias, init.coef, init.intercept)
    assert not fortran.first_layer.flags.c_contiguous
    a, _ = train_two_layer(X, y, fortran, "sigmoid", max_iter=5)
    b, _ = train_two_layer(X, y, init, "sigmoid", max_iter=5)
    np.testing.assert_array_equal(_flat(a), _flat(b))


def test_mse_loss_equals_numpy():
    X, y, params = _classification_problem("mse")
    expected = np.mean((predict_two_layer(params, X, "sigmoid") - y) ** 2)
    value, _ = loss_and_grad(params, X, y, "sigmoid")
    _, history = train_two_layer(X, y, params, "sigmoid", max_iter=1)
    assert value == pytest.approx(expected, rel=1e-12)
    assert history["initial_loss"] == pytest.approx(expected, rel=1e-12)


def test_logistic_and_cross_entropy_match_sklearn_log_loss():
    X, y, params = _classification_problem("logistic")
    p = special.expit(predict_two_layer(params, X, "sigmoid"))
    assert loss_and_grad(params, X, y, "sigmoid", loss="logistic")[0] == pytest.approx(log_loss(y, p), rel=1e-10)
    X, y, params = _classification_problem("cross_entropy")
    P = special.softmax(predict_two_layer(params, X, "sigmoid"), axis=1)
    assert loss_and_grad(params, X, y, "sigmoid", loss="cross_entropy")[0] == pytest.approx(
        log_loss(y, P, labels=[0, 1, 2]), rel=1e-10)


def test_alpha_penalises_weights_not_biases():
    X, y, params = _classification_problem("cross_entropy")
    alpha = 0.3
    v0, g0 = loss_and_grad(params, X, y, "sigmoid", loss="cross_entropy")
    v1, g1 = loss_and_grad(params, X, y, "sigmoid", loss="cross_entropy", alpha=alpha)
    penalty = 0.5 * alpha * (np.sum(params.first_layer**2) + np.sum(params.coef**2))
    assert v1 - v0 == pytest.approx(penalty, rel=1e-10)
    np.testing.assert_allclose(g1.first_layer - g0.first_layer, alpha * params.first_layer, atol=1e-14)
    np.testing.assert_allclose(g1.coef - g0.coef, alpha * params.coef, atol=1e-14)
    np.testing.assert_array_equal(g1.bias, g0.bias)
    np.testing.assert_array_equal(g1.intercept, g0.intercept)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam", "gauss_newton"])
def test_inputs_not_mutated(optimizer):
    X, y, params = _classification_problem("mse")
    saved = (X.copy(), y.copy(), _flat(params))
    out, _ = train_two_layer(X, y, params, "sigmoid", optimizer=optimizer, max_iter=5, alpha=0.1)
    np.testing.assert_array_equal(X, saved[0])
    np.testing.assert_array_equal(y, saved[1])
    np.testing.assert_array_equal(_flat(params), saved[2])
    assert not np.shares_memory(out.first_layer, params.first_layer)


def test_same_seed_gives_identical_results():
    X, y, _ = _teacher(n=400)

    def fit(seed):
        init = random_init(D, 3, None, seed)
        return train_two_layer(X, y, init, "sigmoid", optimizer="adam", lr=1e-2, batch_size=32, max_rows=200,
                               max_iter=5, random_state=seed)

    (a, ha), (b, hb), (c, _) = fit(7), fit(7), fit(8)
    np.testing.assert_array_equal(_flat(a), _flat(b))
    assert ha["loss"] == hb["loss"]
    assert not np.array_equal(_flat(a), _flat(c))


def test_adam_decreases_the_loss_and_history_is_consistent():
    X, y, _ = _teacher(n=400)
    _, history = train_two_layer(X, y, random_init(D, 3, None, 0), "sigmoid", optimizer="adam", lr=1e-2,
                                 batch_size=50, max_iter=40, random_state=0)
    assert history["n_iter"] == len(history["loss"]) == 40 and not history["converged"]
    assert history["loss"][-1] < 0.2 * history["initial_loss"]
    assert history["wall_time"] > 0


@pytest.mark.parametrize("optimizer", ["lbfgs", "gauss_newton"])
def test_train_mask_freezes_exactly_the_masked_entries(optimizer):
    X, y, true = _teacher(n=300)
    init = _perturb(true, 0.2, seed=4)
    mask = {"first_layer": False, "bias": np.array([True, False]), "coef": np.array([False, True]),
            "intercept": False}
    params, _ = train_two_layer(X, y, init, "sigmoid", optimizer=optimizer, max_iter=20, train_mask=mask, alpha=0.1)
    np.testing.assert_array_equal(params.first_layer, init.first_layer)
    assert params.bias[1] == init.bias[1] and params.bias[0] != init.bias[0]
    assert params.coef[0] == init.coef[0] and params.coef[1] != init.coef[1]
    assert params.intercept == init.intercept
    with pytest.raises(ValueError, match="train_mask"):
        train_two_layer(X, y, init, "sigmoid", train_mask={"weights": False})


def test_max_rows_fits_on_a_seeded_subsample_without_replacement():
    X, y, true = _teacher(n=300)
    init = _perturb(true, 0.2, seed=5)
    sub, h_sub = train_two_layer(X, y, init, "sigmoid", max_iter=5, max_rows=40, random_state=9)
    rows = np.sort(np.random.default_rng(9).choice(300, size=40, replace=False))
    ref, h_ref = train_two_layer(X[rows], y[rows], init, "sigmoid", max_iter=5)
    np.testing.assert_array_equal(_flat(sub), _flat(ref))
    assert h_sub["loss"] == h_ref["loss"]
    full, _ = train_two_layer(X, y, init, "sigmoid", max_iter=5, max_rows=300, random_state=9)
    np.testing.assert_array_equal(_flat(full), _flat(train_two_layer(X, y, init, "sigmoid", max_iter=5)[0]))


def test_random_init_scheme():
    params = random_init(400, 300, 2, np.random.default_rng(0))
    assert params.first_layer.shape == (400, 300) and params.coef.shape == (300, 2)
    assert params.first_layer.var() == pytest.approx(1 / 400, rel=0.02)
    assert params.coef.var() == pytest.approx(1 / 300, rel=0.15)
    np.testing.assert_array_equal(params.bias, 0.0)
    np.testing.assert_array_equal(params.intercept, [0.0, 0.0])
    assert random_init(3, 2).intercept == 0.0 and random_init(3, 2).coef.shape == (2,)
    legacy = [random_init(3, 2, None, np.random.RandomState(5)).first_layer for _ in range(2)]
    np.testing.assert_array_equal(*legacy)


def test_verbose_zero_is_silent(capsys):
    X, y, params = _classification_problem("mse")
    train_two_layer(X, y, params, "sigmoid", max_iter=3, verbose=0)
    assert capsys.readouterr() == ("", "")


def test_verbose_final_line_says_it_converged_before_the_budget(capsys):
    X, y, params = _teacher(n=500)
    _, history = train_two_layer(X, y, _perturb(params, 0.1, 0), "sigmoid", max_iter=200, verbose=1)
    assert history["converged"] and history["n_iter"] < 200
    err = capsys.readouterr().err
    assert "L-BFGS training: started, 0/200 iterations" in err
    assert f"L-BFGS training: converged after {history['n_iter']} of 200 iterations, loss " in err


@pytest.mark.parametrize(("optimizer", "budget"), [("lbfgs", "3-iteration"), ("adam", "3-epoch"),
                                                  ("gauss_newton", "3-iteration")])
def test_verbose_final_line_says_the_budget_ran_out(capsys, optimizer, budget):
    X, y, params = _teacher(n=500)
    _, history = train_two_layer(X, y, _perturb(params, 1.0, 0), "sigmoid", optimizer=optimizer, max_iter=3,
                                 verbose=1)
    assert not history["converged"]
    assert f"stopped at the {budget} budget without converging, loss {history['loss'][-1]:.6g}" in (
        capsys.readouterr().err)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"X": np.ones((60, 4))}, "shape"),
    ({"X": np.full((60, D), np.nan)}, "NaN"),
    ({"y": np.ones(59)}, "rows"),
    ({"loss": "logistic", "y": np.full(60, 0.5)}, "labels"),
    ({"loss": "cross_entropy"}, "cross_entropy"),
    ({"batch_size": 10}, "batch_size"),
    ({"optimizer": "sgd"}, "optimizer"),
])
def test_invalid_inputs_raise(kwargs, match):
    X, y, params = _classification_problem("mse")
    args = {"X": X, "y": y, **kwargs}
    with pytest.raises(ValueError, match=match):
        train_two_layer(args.pop("X"), args.pop("y"), params, "sigmoid", **args)


def test_two_layer_params_validates_shapes():
    with pytest.raises(ValueError, match="bias"):
        TwoLayerParams(np.ones((3, 2)), np.ones(3), np.ones(2), 0.0)
    with pytest.raises(ValueError, match="intercept"):
        TwoLayerParams(np.ones((3, 2)), np.ones(2), np.ones((2, 4)), 0.0)
