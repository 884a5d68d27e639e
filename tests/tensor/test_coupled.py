"""Coupled CP: exact recovery of shared factors, and a gain over decomposing one random mix of the outputs."""

import numpy as np
import pytest

from nnlift.metrics import weight_recovery
from nnlift.tensor import cp_symmetric
from nnlift.tensor._multilinear import cp_to_tensor, symmetrize
from nnlift.tensor.coupled import coupled_cp


def _coupled(d, k, p, order, seed):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((d, k))
    A /= np.linalg.norm(A, axis=0)
    W = rng.standard_normal((p, k))
    return A, W, np.stack([cp_to_tensor(W[j], A, order) for j in range(p)])


@pytest.mark.parametrize("order", [3, 4])
@pytest.mark.parametrize(("d", "k", "p"), [(8, 8, 3), (12, 5, 6), (6, 3, 1)])
def test_exact_coupled_tensors_are_recovered(order, d, k, p):
    A, W, tensors = _coupled(d, k, p, order, seed=d + k + p)
    result = coupled_cp(tensors, k, random_state=0)
    assert result.residual < 1e-8
    recovery = weight_recovery(A, result.factors)
    assert recovery.min > 1 - 1e-8
    # the per-output weights match the planted ones up to the sign each factor flip carries (odd orders)
    signs = np.sign(np.sum(A * result.factors[:, recovery.matching], axis=0)) ** order
    np.testing.assert_allclose(result.weights[:, recovery.matching] * signs, W, atol=1e-7)


def test_coupled_beats_one_random_mix_when_outputs_cancel():
    """A neuron strong in one output and weak in the others is kept by the coupled fit; a random mix of noisy
    outputs blurs it."""
    A, W, tensors = _coupled(12, 5, 6, 3, seed=0)
    rng = np.random.default_rng(1)
    noisy = tensors + np.stack([symmetrize(0.02 * rng.standard_normal(tensors.shape[1:])) for _ in range(6)])
    coupled = weight_recovery(A, coupled_cp(noisy, 5, random_state=0).factors).min
    mixes = [weight_recovery(A, cp_symmetric(np.tensordot(rng.standard_normal(6), noisy, axes=1), 5,
                                             random_state=0).factors).min for _ in range(5)]
    assert coupled > 0.99 and coupled > max(mixes)


def test_bad_shapes_and_ranks_are_refused():
    with pytest.raises(ValueError, match="tensors must be"):
        coupled_cp(np.zeros((2, 3, 3)), 1)
    with pytest.raises(ValueError, match="rank"):
        coupled_cp(np.zeros((2, 3, 3, 3)), 4)


@pytest.mark.parametrize("order", [3, 4])
@pytest.mark.parametrize("noise", [1.0, 1e-2, 1e-9])
def test_the_residual_without_forming_the_fit_equals_the_dense_one(order, noise):
    """_fit uses ||T - CP||^2 = ||T||^2 - w . rhs (least-squares weights); compared with the residual formed densely,
    from a fit far off (noise 1) to one inside the cancellation guard (1e-9)."""
    from nnlift.tensor.coupled import _fit

    A, _, tensors = _coupled(7, 4, 3, order, seed=order)
    rng = np.random.default_rng(11)
    noisy = tensors + noise * rng.standard_normal(tensors.shape) * np.std(tensors)
    factors = A + 0.1 * rng.standard_normal(A.shape)
    factors /= np.linalg.norm(factors, axis=0)
    fit = _fit(noisy, factors)
    dense = np.sqrt(sum(np.sum((t - cp_to_tensor(w, factors, order)) ** 2) for t, w in zip(noisy, fit.weights,
                                                                                           strict=True))
                    / np.sum(noisy**2))
    np.testing.assert_allclose(fit.residual, dense, rtol=1e-6)
    exact = _fit(tensors, A)
    assert exact.residual < 1e-7
