"""torch.optim optimizers of the landscape and implicit-bias labs.

Second order (closure returns the batch; see `newton.SecondOrderOptimizer`): `HessianFree` (Martens 2010),
`SaddleFreeNewton` (Dauphin et al. 2014), damped `Newton`. First order: `PathSGD` (Neyshabur et al. 2015),
`SteepestDescent` w.r.t. an l_p norm and greedy `CoordinateDescent` (Gunasekar et al. 2018).
"""

from .hessian_free import HessianFree
from .newton import Newton
from .path_sgd import PathSGD
from .saddle_free import SaddleFreeNewton
from .steepest import CoordinateDescent, SteepestDescent, steepest_direction

__all__ = ["CoordinateDescent", "HessianFree", "Newton", "PathSGD", "SaddleFreeNewton", "SteepestDescent",
           "steepest_direction"]
