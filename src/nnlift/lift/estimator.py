"""The NN-LIFT estimators (Janzamin, Sedghi, Anandkumar 2015, "Beating the Perils of Non-Convexity").

Algorithm 1 of the paper, as scikit-learn estimators:
  1. first layer directions: CP decomposition of E[y · S_m(x)] (`first_layer.py`, `nnlift.tensor`);
  2. scale and bias of each neuron: least squares per neuron (default) or the paper's Fourier method;
  3. output layer: ridge regression (logistic regression for classifiers);
  4. optionally, all weights fine-tuned by gradient descent from that start, with the same training loop and
     budget as `nnlift.baselines` so the comparison with random-init backprop is fair.
The guarantee covers steps 1-3 for realisable targets E[y|x] = a2^T sigma(A1^T x + b1) + b2 with inputs whose
score is known (the Gaussian score by default), k <= d and enough samples (see `diagnostics_`).
"""

from __future__ import annotations

import copy
import time
import warnings

import numpy as np
from rich.console import Console
from scipy.special import expit, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .._backend import is_out_of_core, take_rows
from .._training import TwoLayerParams, predict_two_layer, train_two_layer
from ..activations import get_activation
from ..scores import get_score
from .first_layer import choose_order, estimate_first_layer, resolve_cp_options
from .fourier import fourier_scale_bias
from .output_layer import fit_output_logistic, fit_output_ridge_streaming, hidden_features
from .scale_bias import fit_scale_bias

__all__ = ["LiftRegressor", "LiftClassifier", "NNLiftWarning"]

_MIN_GAP = 1.5
_MAX_RESIDUAL = 0.5


class NNLiftWarning(UserWarning):
    """A condition of NN-LIFT's guarantee looks violated on this data (see `diagnostics_`)."""


class _LiftBase(BaseEstimator):
    def __init__(self, n_hidden, activation="sigmoid", score_function="gaussian", order="auto", finetune=True,
                 alpha=1e-3, scale_bias="least_squares", optimizer="lbfgs", max_iter=200, max_rows=100_000,
                 scale_bias_rows=20_000, random_state=None, verbose=0, device="cpu", dtype=None, client=None,
                 cp_options=None, finetune_alpha=1e-6):
        self.n_hidden = n_hidden
        self.activation = activation
        self.score_function = score_function
        self.order = order
        self.finetune = finetune
        self.alpha = alpha
        self.scale_bias = scale_bias
        self.optimizer = optimizer
        self.max_iter = max_iter
        self.max_rows = max_rows
        self.scale_bias_rows = scale_bias_rows
        self.random_state = random_state
        self.verbose = verbose
        self.device = device
        self.dtype = dtype
        self.client = client
        self.cp_options = cp_options
        self.finetune_alpha = finetune_alpha

    def _log(self, message: str) -> None:
        if self.verbose:
            Console(stderr=True).log(message)

    def _check_params(self, n: int, d: int) -> int:
        get_activation(self.activation)
        if not isinstance(self.n_hidden, int | np.integer) or self.n_hidden < 1:
            raise ValueError(f"n_hidden must be a positive integer, got {self.n_hidden!r}")
        if self.n_hidden > d:
            raise ValueError(
                f"n_hidden={self.n_hidden} exceeds n_features={d}: NN-LIFT's tensor decomposition recovers at "
                "most d linearly independent first-layer columns (undercomplete case); reduce n_hidden or use "
                "nnlift.baselines.BackpropRegressor for an overcomplete network")
        order = choose_order(self.activation) if self.order == "auto" else self.order
        if order not in (3, 4, (3, 4)):
            raise ValueError(f"order must be 'auto', 3, 4 or (3, 4), got {self.order!r}")
        if self.scale_bias not in ("least_squares", "fourier"):
            raise ValueError(f"scale_bias must be 'least_squares' or 'fourier', got {self.scale_bias!r}")
        resolve_cp_options(self.cp_options)
        if n < 2 * d + 2:
            raise ValueError(
                f"n_samples={n} is too few for a moment of order {order} in d={d} dimensions: the score needs "
                f"a covariance estimate (n > 2d + 1) and the moment far more rows; provide more data")
        return order

    def _fit_hidden(self, X: np.ndarray, target: np.ndarray) -> TwoLayerParams:
        """Steps 1-2: first-layer directions, then per-neuron scale and bias (output weights from step 2)."""
        n, d = X.shape
        order = self._check_params(n, d)
        timings = {}
        started = time.perf_counter()
        score = copy.deepcopy(get_score(self.score_function))
        for part in (score, getattr(score, "log_prob", None)):  # fitted scores and densities follow our seed
            if getattr(part, "random_state", 0) is None:
                part.random_state = self.random_state
        first = estimate_first_layer(X, target, int(self.n_hidden), order, score, random_state=self.random_state,
                                     device=self.device, dtype=self.dtype, client=self.client,
                                     cp_options=self.cp_options)
        timings["tensor"] = time.perf_counter() - started
        self._log(f"first layer from E[y·S_m], m = {order}: {first.diagnostics['moment_passes']} passes, "
                  f"{timings['tensor']:.2f} s")
        rng = np.random.default_rng(self.random_state)
        rows = np.sort(rng.choice(n, size=min(n, self.scale_bias_rows), replace=False))
        started = time.perf_counter()
        if self.scale_bias == "fourier":
            if is_out_of_core(X):
                raise ValueError("scale_bias='fourier' needs the data in memory; use 'least_squares' for "
                                 "Dask arrays, tensors and memmaps")
            fitted = fourier_scale_bias(X, target, first, score, self.activation, random_state=self.random_state)
        else:
            fitted = fit_scale_bias(take_rows(X, rows), take_rows(target, rows), first.directions, self.activation)
        timings["scale_bias"] = time.perf_counter() - started
        diagnostics = dict(first.diagnostics)
        diagnostics["scale_bias_r2"] = fitted.r2
        diagnostics["timings"] = timings
        diagnostics["warnings"] = self._guarantee_warnings(diagnostics, n)
        self.diagnostics_ = diagnostics
        return TwoLayerParams(first.directions * fitted.scale, fitted.bias, fitted.coef, fitted.intercept)

    @staticmethod
    def _guarantee_warnings(diag: dict, n: int) -> list[str]:
        messages = []
        if diag["samples_needed"] > n:
            messages.append(f"the moment tensor is noisy: about {diag['samples_needed']:.3g} rows are needed for "
                            f"10% error on the weakest component and there are {n}; the tensor start may be no "
                            "better than a random one")
        gap = diag.get("subspace_gap")
        one_sketch = diag.get("iterations", {}).get("subspace") == 1  # a single random sketch: gaps near 1 are normal
        if gap is not None and np.isfinite(gap) and gap < _MIN_GAP and not one_sketch:
            messages.append(f"no clear rank-{len(diag['component_weights'])} structure in the moment "
                            f"(singular-value gap {gap:.2f}); n_hidden may be too large or n too small")
        if diag.get("residual", 0.0) > _MAX_RESIDUAL:
            messages.append(f"the CP fit leaves {diag['residual']:.0%} of the projected tensor unexplained")
        for message in messages:
            warnings.warn(message, NNLiftWarning, stacklevel=4)
        return messages

    def _finetune(self, X, y, init: TwoLayerParams, loss: str) -> TwoLayerParams:
        if not self.finetune:
            self.n_iter_ = 0
            return init
        max_rows = self.max_rows
        if is_out_of_core(X):
            rng = np.random.default_rng(self.random_state)
            n = X.shape[0]
            rows = np.sort(rng.choice(n, size=min(n, max_rows or n), replace=False))
            X, y, max_rows = take_rows(X, rows), take_rows(y, rows), None
        params, history = train_two_layer(X, y, init, self.activation, loss=loss, optimizer=self.optimizer,
                                          max_iter=self.max_iter, max_rows=max_rows, alpha=self.finetune_alpha,
                                          random_state=self.random_state, device=self.device,
                                          verbose=self.verbose)
        self.diagnostics_["finetune"] = {k: history[k] for k in ("initial_loss", "n_iter", "converged",
                                                                 "wall_time")}
        self.diagnostics_["finetune"]["final_loss"] = history["loss"][-1] if history["loss"] else None
        self.n_iter_ = history["n_iter"]
        return params

    def _store(self, params: TwoLayerParams) -> None:
        self.first_layer_ = params.first_layer
        self.bias_ = params.bias
        self.coef_ = params.coef
        self.intercept_ = params.intercept
        self._params = params

    def _decision(self, X) -> np.ndarray:
        check_is_fitted(self, "first_layer_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return predict_two_layer(self._params, X, self.activation)


class LiftRegressor(RegressorMixin, _LiftBase):
    """Two-layer network y ≈ coef_^T sigma(first_layer_^T x + bias_) + intercept_ trained by NN-LIFT.

    Parameters: `n_hidden` k (<= n_features); `activation` (see `nnlift.activations`); `score_function` the
    input density's score: "gaussian", "mixture", "learned", "student_t", "laplace", "uniform",
    "multivariate_t" or a score object from `nnlift.scores` (named so because `score` is scikit-learn's
    evaluation method); `order` of the moment
    ("auto": 3, or (3, 4) pooled when E[sigma'''] vanishes at zero bias, e.g. ReLU); `finetune` all weights
    from the NN-LIFT start by `optimizer` for `max_iter` iterations on `max_rows` rows with weight penalty
    `finetune_alpha` / 2 (||W||^2 + ||c||^2) (the backprop baselines' `alpha`); `alpha` the ridge
    penalty of the output layer; `scale_bias` "least_squares" or "fourier"; `random_state` seeds every choice;
    `client` a `distributed.Client` whose cluster computes the moment passes (X may then be a Dask array);
    `cp_options` keyword arguments for `nnlift.tensor.cp_symmetric`, or "two_pass" for the two-pass first layer
    (`nnlift.tensor.TWO_PASS`: one sketch pass, one image pass; see BENCHMARKS.md for what it costs in recovery).
    Fitted: `initial_params_` (the NN-LIFT start, before fine-tuning), `first_layer_` (d, k), `bias_`, `coef_`,
    `intercept_`, `n_iter_` (fine-tune iterations), `diagnostics_` (order, passes over the data, subspace
    singular values and gap, tensor residual, component weights and standard errors, samples needed, the
    Gaussianity check of the inputs, scale/bias fit R², fine-tune losses, timings, warnings).
    """

    def fit(self, X, y):
        """Fit on in-memory arrays, or stream a Dask array, torch tensor or memmap (X and y of the same kind)."""
        if is_out_of_core(X):
            if len(X.shape) != 2 or len(y.shape) != 1 or y.shape[0] != X.shape[0]:
                raise ValueError(f"X must be 2-D and y 1-D with one entry per row, got {X.shape} and {y.shape}")
            self.n_features_in_ = int(X.shape[1])
        else:
            X, y = validate_data(self, X, y, y_numeric=True, dtype=np.float64)
        params = self._fit_hidden(X, y)
        started = time.perf_counter()
        coef, intercept = fit_output_ridge_streaming(X, y, params.first_layer, params.bias, self.activation,
                                                     self.alpha)
        params = TwoLayerParams(params.first_layer, params.bias, coef, intercept)
        self.diagnostics_["timings"]["output_layer"] = time.perf_counter() - started
        self.initial_params_ = params
        self._store(self._finetune(X, y, params, "mse"))
        return self

    def predict(self, X) -> np.ndarray:
        return self._decision(X)


class LiftClassifier(ClassifierMixin, _LiftBase):
    """NN-LIFT for binary and multiclass labels, with a logistic (softmax) output layer.

    The tensor step uses E[t · S_m(x)] with t the 0/1 label (binary) or a seeded random combination of the
    one-hot labels (multiclass). Its guarantee holds when E[t | x] is itself a two-layer network with a linear
    output; with a logistic output the moment is only approximately rank k, so the tensor start is a heuristic
    there and `finetune` (cross-entropy, same loop as the backprop baseline) matters more.
    """

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        labels = encoder.transform(y)
        n_classes = len(self.classes_)
        if n_classes < 2:
            raise ValueError(f"LiftClassifier needs at least 2 classes in y, got 1 class ({self.classes_[0]!r})")
        if n_classes == 2:
            target = labels.astype(np.float64)
        else:
            theta = np.random.default_rng(self.random_state).standard_normal(n_classes)
            target = theta[labels]
        params = self._fit_hidden(X, target)
        H = hidden_features(X, params.first_layer, params.bias, self.activation)
        coef, intercept = fit_output_logistic(H, labels, self.alpha)
        if n_classes == 2:
            intercept = float(intercept[0])
        params = TwoLayerParams(params.first_layer, params.bias, coef, intercept)
        loss = "logistic" if n_classes == 2 else "cross_entropy"
        self.initial_params_ = params
        self._store(self._finetune(X, labels, params, loss))
        return self

    def decision_function(self, X) -> np.ndarray:
        return self._decision(X)

    def predict_proba(self, X) -> np.ndarray:
        scores = self._decision(X)
        if scores.ndim == 1:
            positive = expit(scores)
            return np.column_stack([1.0 - positive, positive])
        return softmax(scores, axis=1)

    def predict(self, X) -> np.ndarray:
        probabilities = self.predict_proba(X)
        return self.classes_[np.argmax(probabilities, axis=1)]
