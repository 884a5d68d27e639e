"""nnlift: guaranteed training of two-layer networks by tensor decomposition (NN-LIFT)."""

__version__ = "0.1.0"
