"""Saving and loading fitted two-layer networks (arrays in .npz plus a JSON header), written whole."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.npyio import NpzFile

from ._io import atomic_write
from ._training import TwoLayerParams, predict_two_layer

__all__ = ["SavedModel", "save_model", "load_model"]

FORMAT = "nnlift-two-layer/1"
ARRAYS = ("header", "first_layer", "bias", "coef", "intercept")
HEADER_KEYS = ("activation", "task", "feature_names", "target", "classes")


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


def _not_a_model(path, reason: str) -> ValueError:
    return ValueError(f"{path} is not an nnlift model file ({reason})")


def _read_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays `save_model` writes, read without ever unpickling; ValueError saying what is wrong otherwise."""
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, zipfile.BadZipFile):
        raise _not_a_model(path, "not an .npz archive") from None
    if not isinstance(data, NpzFile):
        raise _not_a_model(path, "a single .npy array, not an .npz archive")
    with data:
        missing = [key for key in ARRAYS if key not in data.files]
        if missing:
            raise _not_a_model(path, f"no {', '.join(missing)} array")
        try:
            return {key: data[key] for key in ARRAYS}
        except (ValueError, EOFError, zipfile.BadZipFile):
            raise _not_a_model(path, "an array holds Python objects or is damaged; nnlift never unpickles") from None


def _read_header(path: str | Path, text: np.ndarray) -> dict:
    """The JSON header, checked for the format tag and every key `load_model` reads."""
    try:
        header = json.loads(str(text))
    except ValueError:
        raise _not_a_model(path, "its header is not JSON") from None
    found = header.get("format") if isinstance(header, dict) else None
    if found != FORMAT:
        raise _not_a_model(path, f"format {found!r}")
    missing = [key for key in HEADER_KEYS if key not in header]
    if missing:
        raise _not_a_model(path, f"its header lacks {', '.join(missing)}")
    return header


def load_model(path: str | Path) -> SavedModel:
    """Load a model written by `save_model`; any other file is a ValueError (nothing is ever unpickled)."""
    arrays = _read_arrays(path)
    header = _read_header(path, arrays["header"])
    intercept = arrays["intercept"]
    params = TwoLayerParams(arrays["first_layer"], arrays["bias"], arrays["coef"],
                            float(intercept) if intercept.ndim == 0 else intercept)
    return SavedModel(params, header["activation"], header["task"], header["feature_names"], header["target"],
                      header["classes"])
