"""Backprop baselines: a randomly initialised two-layer network trained by `nnlift._training.train_two_layer`.

They share the loss, optimiser and stopping rule with NN-LIFT's fine-tuning step, so a comparison isolates
the initialisation (LeCun-normal, `random_init`, against the tensor-decomposition estimate). Inputs are used
as given (no internal standardisation), as NN-LIFT's score functions refer to the raw input distribution.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
import torch
from scipy import special
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ._training import (
    OPTIMIZERS,
    OPTIMIZERS_FOR_ANY_LOSS,
    TwoLayerParams,
    predict_two_layer,
    random_init,
    train_two_layer,
)
from .activations import Activation, available_activations

__all__ = ["BackpropRegressor", "BackpropClassifier"]


class _BackpropBase(BaseEstimator):
    """Shared fit: LeCun-normal `random_init`, then `train_two_layer` with the estimator's settings."""

    _parameter_constraints: dict = {
        "n_hidden": [Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(available_activations())), Activation],
        "optimizer": [StrOptions(set(OPTIMIZERS))],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "max_rows": [Interval(Integral, 1, None, closed="left"), None],
        "tol": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "device": [str, torch.device],
    }

    def __init__(self, n_hidden=10, activation="sigmoid", optimizer="lbfgs", max_iter=200, alpha=1e-6, lr=None,
                 batch_size=None, max_rows=None, tol=1e-7, random_state=None, verbose=0, device="cpu"):
        self.n_hidden = n_hidden
        self.activation = activation
        self.optimizer = optimizer
        self.max_iter = max_iter
        self.alpha = alpha
        self.lr = lr
        self.batch_size = batch_size
        self.max_rows = max_rows
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose
        self.device = device

    def _train(self, X, y, out_dim, loss, sample_weight):
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        rng = np.random.default_rng(seed)
        init = random_init(X.shape[1], self.n_hidden, out_dim, rng)
        params, history = train_two_layer(
            X, y, init, self.activation, loss=loss, optimizer=self.optimizer, max_iter=self.max_iter,
            lr=self.lr, alpha=self.alpha, batch_size=self.batch_size, tol=self.tol, max_rows=self.max_rows,
            random_state=rng, device=self.device, verbose=self.verbose, sample_weight=sample_weight)
        if not history["converged"]:
            warnings.warn(f"{type(self).__name__} reached max_iter={self.max_iter} without converging; "
                          "increase max_iter", ConvergenceWarning, stacklevel=3)
        self.first_layer_ = params.first_layer
        self.bias_ = params.bias
        self.coef_ = params.coef
        self.intercept_ = params.intercept
        self.loss_curve_ = history["loss"]
        self.n_iter_ = history["n_iter"]
        self.converged_ = history["converged"]
        self.fit_time_ = history["wall_time"]
        return self

    def _output(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        params = TwoLayerParams(self.first_layer_, self.bias_, self.coef_, self.intercept_)
        return predict_two_layer(params, X, self.activation)


class BackpropRegressor(RegressorMixin, _BackpropBase):
    """Two-layer network sigma(x^T W + b) c + c0 trained by backprop on the mean squared error.

    Multi-output targets (n, C) give coef_ of shape (n_hidden, C). Fitted attributes: `first_layer_` (d, k),
    `bias_`, `coef_`, `intercept_`, `loss_curve_` (objective per iteration), `n_iter_`, `converged_`,
    `fit_time_` (seconds).
    """

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit to rows X (n, d) and targets y (n,) or (n, C), each row's loss weighted by `sample_weight`;
        NaN/inf are rejected."""
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True, multi_output=True)
        y = y.astype(np.float64)
        return self._train(X, y, None if y.ndim == 1 else y.shape[1], "mse", sample_weight)

    def predict(self, X):
        """Network output, (n,) or (n, C) like the training targets."""
        return self._output(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class BackpropClassifier(ClassifierMixin, _BackpropBase):
    """Two-layer network classifier trained by backprop: a logistic output for two classes, softmax for more.

    Fitted attributes as `BackpropRegressor`, plus `classes_`; `coef_` is (n_hidden,) for two classes (logit
    of `classes_[1]`) and (n_hidden, C) otherwise.
    """

    _parameter_constraints: dict = {**_BackpropBase._parameter_constraints,
                                    "optimizer": [StrOptions(set(OPTIMIZERS_FOR_ANY_LOSS))]}

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit to rows X (n, d) and class labels y (n,), each row's loss weighted by `sample_weight`; NaN/inf are
        rejected. Classes whose rows all have zero weight are not classes of the fit."""
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
            keep = sample_weight > 0
            X, y, sample_weight = X[keep], y[keep], sample_weight[keep]
        self.classes_, labels = np.unique(y, return_inverse=True)
        n_classes = len(self.classes_)
        if n_classes < 2:
            raise ValueError(f"BackpropClassifier needs samples of at least 2 classes, but y contains only one "
                             f"class: {self.classes_[0]}")
        if n_classes == 2:
            return self._train(X, labels, None, "logistic", sample_weight)
        return self._train(X, labels, n_classes, "cross_entropy", sample_weight)

    def decision_function(self, X):
        """Logit of `classes_[1]` (n,) for two classes, else the (n, C) logits."""
        return self._output(X)

    def predict_proba(self, X):
        """Class probabilities (n, C) in the order of `classes_`."""
        logits = self.decision_function(X)
        if logits.ndim == 1:
            p = special.expit(logits)
            return np.column_stack([1.0 - p, p])
        logits = logits - logits.max(axis=1, keepdims=True)
        proba = np.exp(logits)
        return proba / proba.sum(axis=1, keepdims=True)

    def predict(self, X):
        """Most probable class label."""
        logits = self.decision_function(X)
        index = (logits > 0).astype(int) if logits.ndim == 1 else logits.argmax(axis=1)
        return self.classes_[index]
