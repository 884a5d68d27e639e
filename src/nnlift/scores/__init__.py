"""Score functions S_m(x) = (-1)^m grad^m p(x) / p(x), used only through contractions with probe vectors."""

from .gaussian import GaussianScore

__all__ = ["GaussianScore", "get_score"]


def get_score(score):
    """Turn the estimator's `score` argument into a score object ("gaussian" or an instance)."""
    if isinstance(score, str):
        if score == "gaussian":
            return GaussianScore()
        raise ValueError(f"unknown score {score!r}; use 'gaussian' or pass a score instance")
    if hasattr(score, "contract_chunk") and hasattr(score, "project_chunk"):
        return score
    raise TypeError("score must be 'gaussian' or an object with contract_chunk/project_chunk (e.g. GaussianScore)")
