"""Reproducibility and invariances: seeds, component permutation/sign flips, positive scaling."""

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nnlift.tensor import cp_symmetric

from ._helpers import low_rank_tensor, match_errors, random_components, symmetric_noise

_SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.too_slow])


def test_same_seed_gives_identical_output():
    rng = np.random.default_rng(0)
    weights, factors = random_components(rng, 20, 5, orthogonal=False)
    T = low_rank_tensor(weights, factors, 3) + symmetric_noise(rng, 20, 3, 0.1)
    first = cp_symmetric(T, 5, random_state=123)
    second = cp_symmetric(T, 5, random_state=123)
    assert np.array_equal(first.weights, second.weights) and np.array_equal(first.factors, second.factors)
    assert first.diagnostics["residual"] == second.diagnostics["residual"]
    seeded = cp_symmetric(T, 5, random_state=np.random.default_rng(123))
    assert np.array_equal(seeded.factors, first.factors)


@st.composite
def _problems(draw):
    order = draw(st.sampled_from([3, 4]))
    d = draw(st.integers(3, 8))
    k = draw(st.integers(1, min(d, 4)))
    seed = draw(st.integers(0, 2**32 - 1))
    weights, factors = random_components(np.random.default_rng(seed), d, k, orthogonal=draw(st.booleans()))
    assume(np.linalg.cond(factors) < 5)
    return order, weights, factors, draw(st.permutations(range(k))), draw(st.lists(
        st.sampled_from([-1.0, 1.0]), min_size=k, max_size=k))


@_SETTINGS
@given(_problems())
def test_permuting_and_flipping_components_leaves_the_recovered_set_unchanged(problem):
    order, weights, factors, perm, flips = problem
    flips = np.array(flips)
    # lambda a^{⊗m} = (-1)^m lambda (-a)^{⊗m}: the same tensor written with other components
    other_weights = (weights * flips**order)[list(perm)]
    other_factors = (factors * flips)[:, list(perm)]
    k = len(weights)
    first = cp_symmetric(low_rank_tensor(weights, factors, order), k, random_state=0)
    second = cp_symmetric(low_rank_tensor(other_weights, other_factors, order), k, random_state=0)
    assert max(match_errors(first.weights, first.factors, weights, factors, order)) < 1e-8
    assert max(match_errors(second.weights, second.factors, first.weights, first.factors, order)) < 1e-8


@_SETTINGS
@given(_problems(), st.floats(1e-3, 1e3))
def test_scaling_the_tensor_scales_the_weights(problem, c):
    order, weights, factors, _, _ = problem
    k = len(weights)
    T = low_rank_tensor(weights, factors, order)
    base = cp_symmetric(T, k, random_state=0)
    scaled = cp_symmetric(c * T, k, random_state=0)
    assert max(match_errors(scaled.weights / c, scaled.factors, base.weights, base.factors, order)) < 1e-8
    np.testing.assert_allclose(np.sort(scaled.weights), c * np.sort(base.weights), rtol=1e-8)
