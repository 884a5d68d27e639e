"""Positively homogeneous networks and global optimality (Haeffele & Vidal 2015, 2017).

Networks as sums of parallel subnetworks (`ParallelNetwork`), regularisers of matched degree and weight decay
(`objective`, `penalty_terms`), local descent, the polar certificate (`polar`, `certify`), the grow-the-network
meta-algorithm (`grow`), exact 2-D ReLU references (`relu2d`), the exact one-hidden-layer ReLU polar by activation
patterns (`arrangement`) and dropout as a regulariser (`dropout`).
"""

from .arrangement import activation_patterns, pattern_count_bound, relu_polar_enumerated
from .certificate import Certificate, certify, to_network, unit_step
from .descent import Descent, local_descent, perturbation_test
from .grow import GrowResult, grow, grow_matrix_factorization
from .networks import ParallelNetwork
from .polar import Polar, polar, relu_upper_bound
from .regularizers import PENALTIES, objective, penalty_terms, ray_profile, squared_loss, unit_profile
from .relu2d import activation_arcs, relu_convex_optimum, relu_polar_exact_2d

__all__ = ["Certificate", "Descent", "GrowResult", "PENALTIES", "ParallelNetwork", "Polar", "activation_arcs",
           "activation_patterns", "certify", "grow", "grow_matrix_factorization", "local_descent", "objective",
           "pattern_count_bound", "penalty_terms", "perturbation_test", "polar", "ray_profile", "relu_convex_optimum",
           "relu_polar_enumerated", "relu_polar_exact_2d", "relu_upper_bound", "squared_loss", "to_network",
           "unit_profile", "unit_step"]
