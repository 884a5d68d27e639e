"""Symmetric CP decomposition for NN-LIFT's first layer (Janzamin, Sedghi & Anandkumar 2015).

`cp_symmetric(T, rank)` decomposes T = sum_j lambda_j a_j^{⊗m} (m = 3 or 4) given as a dense symmetric array or
as any object with the `SymmetricOperator` protocol (dim, order, contract, project), which is never formed.
"""

from .als import symmetric_als
from .cp import METHODS, TWO_PASS, CPResult, cp_symmetric
from .jennrich import jennrich_cp
from .operator import DenseSymmetricTensor, SymmetricOperator, as_operator
from .power import tensor_power_method
from .refine import refine_on_operator
from .subspace import NotWhitenableError, Whitening, range_finder, whiten

__all__ = [
    "cp_symmetric",
    "CPResult",
    "METHODS",
    "TWO_PASS",
    "SymmetricOperator",
    "DenseSymmetricTensor",
    "as_operator",
    "range_finder",
    "whiten",
    "Whitening",
    "NotWhitenableError",
    "tensor_power_method",
    "jennrich_cp",
    "symmetric_als",
    "refine_on_operator",
]
