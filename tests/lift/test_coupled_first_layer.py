"""The coupled first layer: several targets' moments decomposed together see a neuron that a mix cancels."""

import warnings

import numpy as np

from nnlift import LiftClassifier
from nnlift.lift import NNLiftWarning
from nnlift.lift.first_layer import estimate_first_layer, estimate_first_layer_coupled
from nnlift.metrics import weight_recovery
from nnlift.scores import GaussianScore


def test_a_neuron_that_cancels_in_the_mix_is_found_by_the_coupled_moments():
    """y_1 and y_2 share three tanh neurons; neuron 3 enters them with opposite signs, so y_1 + y_2 has no trace of
    it, while the coupled decomposition of both moments recovers all three."""
    rng = np.random.default_rng(0)
    d, n = 6, 400_000
    A = np.linalg.qr(rng.standard_normal((d, 3)))[0] * 1.5
    X = rng.standard_normal((n, d))
    hidden = np.tanh(X @ A + np.array([0.2, -0.3, 0.1]))
    C = np.array([[1.0, 0.8], [0.7, -0.9], [1.0, -1.0]])
    Y = hidden @ C + 0.05 * rng.standard_normal((n, 2))
    score = GaussianScore(np.zeros(d), np.eye(d))
    mixed = estimate_first_layer(X, Y.sum(axis=1), 3, 3, score, random_state=0)
    coupled = estimate_first_layer_coupled([(X, Y[:, 0]), (X, Y[:, 1])], 3, 3, score, random_state=0)
    assert weight_recovery(A, coupled.directions).min > 0.99
    assert weight_recovery(A, mixed.directions).cosines[2] < 0.9
    assert coupled.target_weights.shape == (2, 3) and coupled.diagnostics["method"] == "coupled"
    assert coupled.diagnostics["moment_passes"] == 2 * 3


def test_multiclass_classifier_uses_the_coupled_moment_and_keeps_the_schema():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30_000, 5))
    A = np.linalg.qr(rng.standard_normal((5, 3)))[0] * 2.0
    logits = np.tanh(X @ A) @ rng.standard_normal((3, 4)) * 3
    labels = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NNLiftWarning)
        model = LiftClassifier(3, activation="tanh", random_state=0, max_iter=50).fit(X, labels)
    assert model.diagnostics_["tensor"][0]["method"] == "coupled"
    assert len(model.diagnostics_["component_agreement"]) == 3
    assert weight_recovery(A, model.initial_params_.first_layer).min > 0.9
