"""Saving and loading fitted two-layer networks (arrays in .npz plus a JSON header), written whole."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._io import atomic_write
from ._training import TwoLayerParams, predict_two_layer

__all__ = ["SavedModel", "save_model", "load_model"]

FORMAT = "nnlift-two-layer/1"


@dataclass
class SavedModel:
    """A fitted network: parameters, activation, task ("regression"/"classification"), feature names, classes."""

    params: TwoLayerParams
    activation: str
    task: str
    feature_names: list[str]
    target: str
    classes: list | None = None

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(f"expected {len(self.feature_names)} feature columns {self.feature_names}, "
                             f"got shape {X.shape}")
        scores = predict_two_layer(self.params, X, self.activation)
        if self.task == "regression":
            return scores
        index = (scores > 0).astype(int) if scores.ndim == 1 else np.argmax(scores, axis=1)
        return np.asarray(self.classes)[index]


def save_model(path: str | Path, estimator, feature_names: list[str], target: str) -> Path:
    """Save a fitted LiftRegressor/LiftClassifier (or baseline) to `path` (.npz)."""
    classes = getattr(estimator, "classes_", None)
    header = {"format": FORMAT, "activation": str(estimator.activation),
              "task": "classification" if classes is not None else "regression",
              "feature_names": list(feature_names), "target": target,
              "classes": None if classes is None else np.asarray(classes).tolist()}

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, header=np.array(json.dumps(header)), first_layer=estimator.first_layer_,
                     bias=estimator.bias_, coef=estimator.coef_, intercept=np.asarray(estimator.intercept_))
    return atomic_write(path, write)


def load_model(path: str | Path) -> SavedModel:
    """Load a model written by `save_model`."""
    with np.load(path, allow_pickle=False) as data:
        header = json.loads(str(data["header"]))
        if header.get("format") != FORMAT:
            raise ValueError(f"{path} is not an nnlift model file (format {header.get('format')!r})")
        intercept = data["intercept"]
        params = TwoLayerParams(data["first_layer"], data["bias"], data["coef"],
                                float(intercept) if intercept.ndim == 0 else intercept)
    return SavedModel(params, header["activation"], header["task"], header["feature_names"], header["target"],
                      header["classes"])
