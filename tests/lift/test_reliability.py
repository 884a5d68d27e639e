"""The reliability verdict: residual structure, split halves, candidates, and one diagnostics_ schema."""

import warnings

import numpy as np
import pytest

from nnlift import LiftClassifier, LiftRegressor
from nnlift._training import TwoLayerParams
from nnlift.datasets import make_teacher
from nnlift.lift import NNLiftWarning, estimator
from nnlift.lift.first_layer import FirstLayerEstimate
from nnlift.lift.reliability import residual_structure, split_half_agreement, validation_split
from nnlift.scores import GaussianScore


@pytest.fixture(scope="module")
def teacher():
    return make_teacher(40_000, 6, 3, "tanh", noise=0.1, weight_scale=1.5, random_state=7, n_test=10_000)


def _halves(t):
    return (t.X[:30_000], t.y[:30_000]), (t.X[30_000:], t.y[30_000:])


def test_residual_of_the_true_network_has_no_structure_and_a_missing_neuron_does(teacher):
    truth = TwoLayerParams(teacher.first_layer, teacher.bias, teacher.coef, teacher.intercept)
    train, held_out = _halves(teacher)
    clean = residual_structure(truth, train, held_out, "tanh", "mse", random_state=0)
    assert clean["z"] < 5.0
    coef = teacher.coef.copy()
    coef[1] = 0.0  # drop one neuron: its a^{⊗m} is left in the residual
    missing = residual_structure(TwoLayerParams(teacher.first_layer, teacher.bias, coef, teacher.intercept),
                                 train, held_out, "tanh", "mse", random_state=0)
    assert missing["z"] > 20.0


def test_split_halves_agree_on_true_directions_with_many_rows_and_not_with_few():
    big = make_teacher(200_000, 8, 2, "tanh", weight_scale=1.5, random_state=1)
    small = make_teacher(600, 8, 2, "tanh", weight_scale=1.5, random_state=1)
    agreements = []
    for t in (big, small):
        directions = t.first_layer / np.linalg.norm(t.first_layer, axis=0)
        score = GaussianScore(np.zeros(8), np.eye(8)).fit(t.X)
        agreements.append(split_half_agreement(t.X, t.y, directions, [3, 3], score).min())
    assert agreements[0] > 0.99 and agreements[1] < 0.9


def test_validation_split_is_disjoint_and_capped():
    train, held_out = validation_split(1_000, 500, random_state=0)
    assert len(held_out) == 200 and len(train) == 500 and not set(train) & set(held_out)
    train, held_out = validation_split(1_000_000, 100_000, random_state=0)
    assert len(held_out) == 20_000 and len(train) == 100_000


def test_a_bad_tensor_start_loses_to_a_random_start_and_the_fit_is_still_reliable(teacher, monkeypatch):
    """Never worse than backprop: directions orthogonal to the truth are caught by the residual and replaced."""
    def wrong_directions(X, y, n_hidden, order, score, **kwargs):
        score.fit(X)
        rng = np.random.default_rng(0)
        directions = np.linalg.qr(rng.standard_normal((X.shape[1], n_hidden)))[0]
        diagnostics = {"order": 3, "moment_passes": 0, "residual": 0.0, "component_weights": [1.0] * n_hidden,
                       "component_stderr": [0.01] * n_hidden, "component_orders": [3] * n_hidden,
                       "component_samples_needed": [10] * n_hidden, "samples_needed": 10, "gaussianity": None,
                       "score": {"family": "GaussianScore"}}
        return FirstLayerEstimate(directions, np.ones(n_hidden), diagnostics)

    monkeypatch.setattr(estimator, "estimate_first_layer", wrong_directions)
    model = LiftRegressor(3, activation="tanh", random_state=0, max_rows=20_000).fit(teacher.X, teacher.y)
    diag = model.diagnostics_
    names = [c["name"] for c in diag["candidates"]]
    assert names == ["tensor", "tensor start"] + [f"random-{i + 1}" for i in range(estimator.N_RANDOM_STARTS)]
    assert diag["winner"].startswith("random")
    assert diag["doubts"] and diag["reliable"]
    assert np.mean((model.predict(teacher.X_test) - teacher.y_test) ** 2) < 1.1 * teacher.noise_var


def test_too_few_hidden_units_is_flagged_with_a_warning(teacher):
    with pytest.warns(NNLiftWarning, match="held-out residual"):
        model = LiftRegressor(1, activation="tanh", random_state=0, max_rows=20_000).fit(teacher.X, teacher.y)
    assert model.diagnostics_["reliable"] is False


def test_a_good_fit_does_not_warn(teacher):
    with warnings.catch_warnings():
        warnings.simplefilter("error", NNLiftWarning)
        model = LiftRegressor(3, activation="tanh", random_state=0, max_rows=20_000).fit(teacher.X, teacher.y)
    assert model.diagnostics_["reliable"] and model.diagnostics_["reasons"] == []


def test_diagnostics_have_one_schema_for_every_activation_score_and_task():
    t = make_teacher(30_000, 5, 2, "relu", weight_scale=1.0, random_state=2)
    settings = {"random_state": 0, "max_iter": 20, "max_rows": 5_000}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models = [LiftRegressor(2, activation="tanh", **settings).fit(t.X, t.y),
                  LiftRegressor(2, activation="relu", **settings).fit(t.X, t.y),
                  LiftRegressor(2, activation="tanh", score_function="student_t", finetune=False,
                                **settings).fit(t.X[:5_000], t.y[:5_000]),
                  LiftClassifier(2, activation="tanh", **settings).fit(t.X, t.y > np.median(t.y))]
    keys = [set(m.diagnostics_) for m in models]
    assert all(k == keys[0] for k in keys)
    assert {"reliable", "reasons", "split_half_agreement", "candidates", "winner", "frame"} <= keys[0]


def test_cross_validating_an_easy_problem_raises_no_warning(teacher):
    from sklearn.model_selection import GridSearchCV

    with warnings.catch_warnings():
        warnings.simplefilter("error", NNLiftWarning)
        search = GridSearchCV(LiftRegressor(3, activation="tanh", random_state=0, max_rows=10_000),
                              {"alpha": [1e-3]}, cv=5).fit(teacher.X[:20_000], teacher.y[:20_000])
    assert search.best_score_ > 0.9
