"""Critical points of the two-layer linear autoencoder x -> W2 W1 x (Baldi & Hornik 1989), where the whole
Hessian spectrum is known in closed form.

With Σ = XᵀX/n = Σ_i λ_i u_i u_iᵀ (distinct λ_i) and L = ‖X − X W1ᵀW2ᵀ‖²/(n d) (MSE), every W1 = C U_Sᵀ,
W2 = U_S C⁻¹ for a set S of p eigenvectors is a critical point, and the global minima are those with S the top p.
Expanding L to second order at C = I (eigenbasis coordinates) splits the Hessian into 2×2 blocks:
- for j ∈ S, c ∉ S, the coefficients x of u_cᵀ in W1's row for u_j and y of u_c in W2's column for u_j see
  (2/d)[[λ_c, −λ_c], [−λ_c, λ_j]], eigenvalues ((λ_c + λ_j) ± √((λ_c − λ_j)² + 4λ_c²))/d: one negative
  exactly when λ_c > λ_j, i.e. a larger eigenvector was left out;
- for a, b ∈ S, the pair (W1 entry, W2 entry) meeting at M_ab sees (2/d) λ_b [[1, 1], [1, 1]]: eigenvalues
  4λ_b/d and 0 (the p² zero directions of the GL(p) symmetry W1 → A W1, W2 → W2 A⁻¹).
So the index is #{(j, c): j ∈ S, c ∉ S, λ_c > λ_j}. At C ≠ I the Hessian is congruent to this one (the map
(W1, W2) → (C W1, W2 C⁻¹) is linear), so by Sylvester's law of inertia the count is the same.
"""

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from nnlift.landscape import FunctionalLoss, HessianOperator, critical_point_index, lanczos

D, HIDDEN, ROWS = 5, 2, 20
LAMBDAS = np.array([5.0, 3.5, 2.0, 1.2, 0.5])
SUBSETS = list(itertools.combinations(range(D), HIDDEN))


@pytest.fixture(scope="module")
def data():
    """Rows whose second moment XᵀX/n is exactly U diag(LAMBDAS) Uᵀ."""
    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.standard_normal((D, D)))
    Z, _ = np.linalg.qr(rng.standard_normal((ROWS, D)))
    X = np.sqrt(ROWS) * Z * np.sqrt(LAMBDAS) @ U.T
    return torch.from_numpy(X), U


def _autoencoder(U, subset, C=None) -> nn.Module:
    C = np.eye(HIDDEN) if C is None else C
    model = nn.Sequential(nn.Linear(D, HIDDEN, bias=False), nn.Linear(HIDDEN, D, bias=False)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(C @ U[:, list(subset)].T))
        model[1].weight.copy_(torch.from_numpy(U[:, list(subset)] @ np.linalg.inv(C)))
    return model


def _analytic_spectrum(subset) -> np.ndarray:
    inside, outside = LAMBDAS[list(subset)], np.delete(LAMBDAS, list(subset))
    values = [((lc + lj) + sign * np.sqrt((lc - lj) ** 2 + 4 * lc**2)) / D
              for lj in inside for lc in outside for sign in (1, -1)]
    values += [value for lb in inside for value in (4 * lb / D, 0.0) for _ in range(HIDDEN)]
    return np.sort(values)


def _analytic_index(subset) -> int:
    return sum(LAMBDAS[c] > LAMBDAS[j] for j in subset for c in set(range(D)) - set(subset))


@pytest.mark.parametrize("subset", SUBSETS)
def test_critical_points_have_the_analytic_spectrum(data, subset):
    X, U = data
    model = _autoencoder(U, subset)
    op = HessianOperator(model, nn.functional.mse_loss, (X, X))
    assert op.objective.gradient().abs().max() < 1e-12
    spectrum = _analytic_spectrum(subset)
    np.testing.assert_allclose(np.linalg.eigvalsh(op.to_dense().numpy()), spectrum, rtol=0, atol=1e-12)
    index = critical_point_index(op)
    assert index.n_negative == _analytic_index(subset) and index.index == _analytic_index(subset) / (2 * D * HIDDEN)
    if subset == (0, 1):
        assert index.n_negative == 0
    else:
        assert index.n_negative > 0
        assert lanczos(op, 1, "SA", tol=0, random_state=0).values[0] == pytest.approx(spectrum[0], abs=1e-10)


@pytest.mark.parametrize("subset", [(0, 1), (0, 2), (3, 4)])
def test_rescaled_critical_points_keep_their_index(data, subset):
    X, U = data
    C = np.array([[2.0, 0.7], [-0.3, 0.6]])
    model = _autoencoder(U, subset, C)
    objective = FunctionalLoss(model, nn.functional.mse_loss, (X, X))
    assert objective.gradient().abs().max() < 1e-12
    assert critical_point_index(HessianOperator(model, nn.functional.mse_loss, (X, X))).n_negative == \
        _analytic_index(subset)


def test_the_global_minimum_has_the_lowest_loss(data):
    X, U = data
    losses = {subset: FunctionalLoss(_autoencoder(U, subset), nn.functional.mse_loss, (X, X)).loss()
              for subset in SUBSETS}
    for subset, loss in losses.items():
        assert loss == pytest.approx(np.delete(LAMBDAS, list(subset)).sum() / D, rel=1e-12)
    assert min(losses, key=losses.get) == (0, 1)
