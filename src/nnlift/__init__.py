"""nnlift: guaranteed training of two-layer networks by tensor decomposition (NN-LIFT)."""

from .lift import LiftClassifier, LiftRegressor

__version__ = "0.1.0"
__all__ = ["LiftClassifier", "LiftRegressor", "__version__"]
