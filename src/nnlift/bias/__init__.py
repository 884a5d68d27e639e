"""Implicit bias of optimizers: convex references and the experiments that converge (or not) to them."""

from .references import InaccurateSolveError, MaxMargin, max_margin, min_nuclear_norm, nuclear_norm_denoise

__all__ = ["InaccurateSolveError", "MaxMargin", "max_margin", "min_nuclear_norm", "nuclear_norm_denoise"]
