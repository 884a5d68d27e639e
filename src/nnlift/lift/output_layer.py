"""Output layer of NN-LIFT: ridge regression on the hidden features (Janzamin et al. 2015, Alg. 1, last step)."""

from __future__ import annotations

import numpy as np
from scipy import linalg
from sklearn.linear_model import LogisticRegression

from .._backend import DEFAULT_CHUNK_ROWS, iter_row_chunks
from ..activations import get_activation

__all__ = ["hidden_features", "fit_output_ridge_streaming", "fit_output_logistic"]


def hidden_features(X: np.ndarray, first_layer: np.ndarray, bias: np.ndarray, activation) -> np.ndarray:
    """sigma(X A1 + b1): the (n, k) hidden-unit activations."""
    return get_activation(activation).numpy(X @ first_layer + bias)


def fit_output_ridge_streaming(X, y, first_layer: np.ndarray, bias: np.ndarray, activation, alpha: float,
                               sample_weight=None, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> tuple[np.ndarray, float]:
    """argmin_c sum_i w_i (y_i - h_i c - c0)^2 + alpha ||c||^2 (intercept unpenalised), H = sigma(X A1 + b1), in one
    pass (w = 1 without `sample_weight`, an in-memory (n,) array indexed like the rows).

    scikit-learn's Ridge needs H whole; to serve row sources that do not fit in memory (memmaps, Dask arrays)
    the centred normal equations (H_c^T H_c + alpha I) c = H_c^T y_c are accumulated chunk by chunk instead.
    """
    k = first_layer.shape[1]
    count, sum_h, sum_y = 0, np.zeros(k), 0.0
    gram, cross = np.zeros((k, k)), np.zeros(k)
    for start, X_chunk, y_chunk in iter_row_chunks(X, y, chunk_rows):
        H = hidden_features(np.asarray(X_chunk, dtype=np.float64), first_layer, bias, activation)
        y_chunk = np.asarray(y_chunk, dtype=np.float64)
        w = np.ones(len(y_chunk)) if sample_weight is None else sample_weight[start:start + len(y_chunk)]
        count += float(w.sum())
        sum_h += w @ H
        sum_y += float(w @ y_chunk)
        gram += H.T @ (w[:, None] * H)
        cross += H.T @ (w * y_chunk)
    mean_h, mean_y = sum_h / count, sum_y / count
    gram_c = gram - count * np.outer(mean_h, mean_h)
    cross_c = cross - count * mean_h * mean_y
    coef = linalg.solve(gram_c + alpha * np.eye(k), cross_c, assume_a="pos")
    return coef, float(mean_y - mean_h @ coef)


def fit_output_logistic(H: np.ndarray, labels: np.ndarray, alpha: float, sample_weight=None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """L2-regularised logistic / softmax regression on H (rows weighted by `sample_weight`, whose total stands for
    n in the penalty): returns (coef (k,) or (k, C), intercept)."""
    n = H.shape[0] if sample_weight is None else float(np.sum(sample_weight))
    model = LogisticRegression(C=1.0 / max(alpha * n, 1e-12), max_iter=1000).fit(H, labels,
                                                                              sample_weight=sample_weight)
    if model.coef_.shape[0] == 1:
        return model.coef_[0].copy(), model.intercept_.copy()
    return model.coef_.T.copy(), model.intercept_.copy()
