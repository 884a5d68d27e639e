"""nnlift: guaranteed training of two-layer networks by tensor decomposition (NN-LIFT)."""

from .lift import LiftClassifier, LiftRegressor
from .sysid import IdentificationReport, IdentifiedNetwork, identify

__version__ = "0.1.0"
__all__ = ["LiftClassifier", "LiftRegressor", "identify", "IdentifiedNetwork", "IdentificationReport", "__version__"]
