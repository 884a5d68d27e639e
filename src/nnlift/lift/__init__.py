"""NN-LIFT estimators: first layer by tensor decomposition, scale/bias, output layer, fine-tune."""

from .estimator import LiftClassifier, LiftRegressor, NNLiftWarning

__all__ = ["LiftClassifier", "LiftRegressor", "NNLiftWarning"]
