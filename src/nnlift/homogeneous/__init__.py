"""Positively homogeneous networks and global optimality (Haeffele & Vidal 2015, 2017).

Networks as sums of parallel subnetworks (`ParallelNetwork`), regularisers of matched degree and weight decay
(`objective`, `penalty_terms`), local descent, the polar certificate (`polar`, `certify`), the grow-the-network
meta-algorithm (`grow`), exact 2-D ReLU references (`relu2d`) and dropout as a regulariser (`dropout`).
"""

from .certificate import Certificate, certify, to_network, unit_step
from .descent import Descent, local_descent, perturbation_test
from .grow import GrowResult, grow, grow_matrix_factorization
from .networks import ParallelNetwork
from .polar import Polar, polar
from .regularizers import PENALTIES, objective, penalty_terms, ray_profile, squared_loss, unit_profile
from .relu2d import activation_arcs, relu_convex_optimum, relu_polar_exact_2d

__all__ = ["Certificate", "Descent", "GrowResult", "PENALTIES", "ParallelNetwork", "Polar", "activation_arcs",
           "certify", "grow", "grow_matrix_factorization", "local_descent", "objective", "penalty_terms",
           "perturbation_test", "polar", "ray_profile", "relu_convex_optimum", "relu_polar_exact_2d", "squared_loss",
           "to_network", "unit_profile", "unit_step"]
