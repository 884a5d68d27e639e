"""Score functions S_m(x) = (-1)^m grad^m p(x) / p(x), used only through contractions with probe vectors.

Every score implements one protocol (see `GaussianScore`): `fit(X, chunk_rows)`, `is_fitted`, `contract_chunk`,
`contract_rows`, `contract_pairs_chunk`, `project_chunk` and `dense`. Families: `GaussianScore` (Hermite
tensors of N(mu, Sigma)), `MixtureScore` (a fitted Gaussian mixture, exact), `DensityScore` (any torch
log-density, by automatic differentiation; ready-made densities in `nnlift.scores.densities`) and
`LearnedScore` (denoising score matching). `stein_check` measures how well any of them fits the data.
"""

from .densities import MultivariateT, NormalLaplaceMarginals, SmoothedUniformMarginals, StudentTMarginals
from .density import DensityScore
from .diagnostics import stein_check
from .gaussian import GaussianScore, NonGaussianInputWarning
from .learned import LearnedScore
from .mixture import MixtureScore

__all__ = ["DensityScore", "GaussianScore", "LearnedScore", "MixtureScore", "MultivariateT", "NonGaussianInputWarning",
           "NormalLaplaceMarginals", "SCORE_NAMES", "SmoothedUniformMarginals", "StudentTMarginals", "get_score",
           "stein_check"]

SCORE_NAMES = ("gaussian", "mixture", "learned", "student_t", "laplace", "uniform", "multivariate_t")
_PROTOCOL = ("fit", "is_fitted", "contract_chunk", "contract_pairs_chunk", "project_chunk", "contract_rows")


def get_score(score):
    """Turn the estimator's `score_function` argument into a fresh score object (a name or an instance)."""
    if isinstance(score, str):
        factories = {
            "gaussian": GaussianScore,
            "mixture": MixtureScore,
            "learned": LearnedScore,
            "student_t": lambda: DensityScore(StudentTMarginals()),
            "laplace": lambda: DensityScore(NormalLaplaceMarginals()),
            "uniform": lambda: DensityScore(SmoothedUniformMarginals()),
            "multivariate_t": lambda: DensityScore(MultivariateT()),
        }
        if score not in factories:
            raise ValueError(f"unknown score {score!r}; use one of {', '.join(SCORE_NAMES)} or a score instance")
        return factories[score]()
    missing = [name for name in _PROTOCOL if not hasattr(score, name)]
    if missing:
        raise TypeError(f"score must be one of {', '.join(SCORE_NAMES)} or a score object; {type(score).__name__} "
                        f"lacks {', '.join(missing)} (see nnlift.scores.GaussianScore for the protocol)")
    return score
