"""Output layer of NN-LIFT: ridge regression on the hidden features (Janzamin et al. 2015, Alg. 1, last step)."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge

from ..activations import get_activation

__all__ = ["hidden_features", "fit_output_ridge", "fit_output_logistic"]


def hidden_features(X: np.ndarray, first_layer: np.ndarray, bias: np.ndarray, activation) -> np.ndarray:
    """sigma(X A1 + b1): the (n, k) hidden-unit activations."""
    return get_activation(activation).numpy(X @ first_layer + bias)


def fit_output_ridge(H: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """argmin_c ||y - H c - c0||^2 + alpha ||c||^2 (intercept unpenalised): returns (c, c0)."""
    model = Ridge(alpha=alpha).fit(H, y)
    return model.coef_.copy(), float(model.intercept_)


def fit_output_logistic(H: np.ndarray, labels: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """L2-regularised logistic / softmax regression on H: returns (coef (k,) or (k, C), intercept)."""
    n = H.shape[0]
    model = LogisticRegression(C=1.0 / max(alpha * n, 1e-12), max_iter=1000).fit(H, labels)
    if model.coef_.shape[0] == 1:
        return model.coef_[0].copy(), model.intercept_.copy()
    return model.coef_.T.copy(), model.intercept_.copy()
