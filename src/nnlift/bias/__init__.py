"""Implicit bias of optimizers: convex references and the experiments that converge (or not) to them.

`references` (cvxpy max margins and nuclear-norm problems), `margin` (GD / momentum / steepest descent /
AdaGrad on separable data, Soudry et al. 2018, Gunasekar et al. 2018; `margin_report` for a user's model),
`factorization` (GD on U U^T vs minimum nuclear norm, Gunasekar et al. 2017; Razin & Cohen 2020),
`linear_nets` (fully connected vs circular convolutional linear nets, Gunasekar et al. 2018) and `adaptive`
(Wilson et al. 2017's construction where adaptive methods generalise worse).
"""

from .adaptive import fit_least_squares, wilson_problem
from .factorization import deep_factorization_completion, factorized_gd, gaussian_sensing, symmetric_completion
from .linear_nets import fourier_l1_max_margin, train_linear_net
from .margin import (
    MarginReport,
    adagrad_direction,
    logistic_margin_trajectory,
    margin_report,
    soudry_check,
    steepest_margin_trajectory,
)
from .references import InaccurateSolveError, MaxMargin, max_margin, min_nuclear_norm, nuclear_norm_denoise

__all__ = ["InaccurateSolveError", "MarginReport", "MaxMargin", "adagrad_direction", "deep_factorization_completion",
           "factorized_gd", "fit_least_squares", "fourier_l1_max_margin", "gaussian_sensing",
           "logistic_margin_trajectory", "margin_report", "max_margin", "min_nuclear_norm", "nuclear_norm_denoise",
           "soudry_check", "steepest_margin_trajectory", "symmetric_completion", "train_linear_net",
           "wilson_problem"]
