"""torch.optim optimizers of the landscape and implicit-bias labs.

Second order (closure returns the batch; see `newton.SecondOrderOptimizer`): `HessianFree` (Martens 2010),
`SaddleFreeNewton` (Dauphin et al. 2014), damped `Newton`, `KFAC` (Martens & Grosse 2015). First order: `PathSGD`
(Neyshabur et al. 2015), `SteepestDescent` w.r.t. an l_p norm and greedy `CoordinateDescent` (Gunasekar et al. 2018),
and `NonlinearCG` (Fletcher-Reeves, Polak-Ribière+; torch's closure that returns the loss, like `torch.optim.LBFGS`).
"""

from .hessian_free import HessianFree
from .kfac import KFAC
from .newton import Newton
from .nonlinear_cg import NonlinearCG
from .path_sgd import PathSGD
from .saddle_free import SaddleFreeNewton
from .steepest import CoordinateDescent, SteepestDescent, steepest_direction

__all__ = ["CoordinateDescent", "HessianFree", "KFAC", "Newton", "NonlinearCG", "PathSGD", "SaddleFreeNewton",
           "SteepestDescent", "steepest_direction"]
