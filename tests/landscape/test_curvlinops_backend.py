"""nnlift's operators against curvlinops' on the tiny MLP, and the curvlinops-backed K-FAC/EKFAC operators against
dense Kronecker references built from their definitions (Martens & Grosse 2015; George et al. 2018)."""

import copy

import numpy as np
import pytest
import torch
from curvlinops import (
    EFLinearOperator,
    EKFACLinearOperator,
    GGNLinearOperator,
    HessianLinearOperator,
    KFACLinearOperator,
)
from scipy.sparse.linalg import LinearOperator
from torch import nn

from nnlift.landscape import (
    EKFACOperator,
    EmpiricalFisherOperator,
    GaussNewtonOperator,
    HessianOperator,
    KFACOperator,
    lanczos,
)
from nnlift.optim.kfac import damped_inverses

PAIRS = {"hessian": (HessianOperator, HessianLinearOperator), "gauss_newton": (GaussNewtonOperator, GGNLinearOperator),
         "fisher": (EmpiricalFisherOperator, EFLinearOperator)}
LAYERS = {"0": (4, 3, 0, 12), "2": (2, 4, 16, 24)}  # out, in, offset of the weight, offset of the bias


def _loss_module(loss_fn):
    return nn.MSELoss() if loss_fn is nn.functional.mse_loss else nn.CrossEntropyLoss()


def _columns(seed=2):
    return torch.randn(26, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("kind", PAIRS)
@pytest.mark.parametrize("selection", [None, "2.*"])
def test_products_equal_curvlinops(problem, kind, selection):
    """The same matrices to 1e-10, except that curvlinops' empirical Fisher of MSELoss is C = 2 times nnlift's: its
    per-example loss is ‖f − y‖² with 1/(NC) in front, nnlift's g_i is the gradient of mse_loss on row i."""
    ours, theirs = PAIRS[kind]
    X, y = problem.X, problem.y
    data = [(X[:4], y[:4]), (X[4:], y[4:])]
    op = ours(problem.model, problem.loss_fn, data, parameters=selection)
    named = dict(problem.model.named_parameters())
    params = [named[name] for name in op.objective.names]
    reference = theirs(problem.model, _loss_module(problem.loss_fn), params, data, check_deterministic=False)
    scale = 2.0 if kind == "fisher" and problem.loss_fn is nn.functional.mse_loss else 1.0
    V = _columns()[:op.shape[0]]
    torch.testing.assert_close(scale * (op @ V), reference @ V, rtol=0, atol=1e-10)


def _factors(model, loss_fn, X, y, fisher_type):
    """K-FAC's (A, G) of each layer from the definitions: A = (1/N) Σ ā āᵀ, G = (1/N) Σ J_nᵀ M_n J_n with
    J_n = ∂f_n/∂s_n and M_n the Hessian in f_n of the row's loss (type-2) or C·∇ℓ∇ℓᵀ for MSE, ∇ℓ∇ℓᵀ for
    cross-entropy (empirical)."""
    W1, b1, W2, b2 = model[0].weight, model[0].bias, model[2].weight, model[2].bias
    ones = torch.ones(X.shape[0], 1, dtype=X.dtype)
    s1 = X @ W1.T + b1
    h = torch.tanh(s1)
    f = (h @ W2.T + b2).detach()
    C = f.shape[1]
    A = {"0": torch.cat([X, ones], 1), "2": torch.cat([h, ones], 1).detach()}
    G = {"0": torch.zeros(4, 4, dtype=X.dtype), "2": torch.zeros(2, 2, dtype=X.dtype)}
    for n in range(X.shape[0]):
        row_loss = lambda out, n=n: loss_fn(out[None], y[n:n + 1])  # noqa: E731
        if fisher_type == "type-2":
            M = torch.autograd.functional.hessian(row_loss, f[n])
        else:
            g = torch.autograd.functional.jacobian(row_loss, f[n])
            M = (C if loss_fn is nn.functional.mse_loss else 1) * torch.outer(g, g)
        J1 = W2.detach() * (1 - h[n].detach() ** 2)
        G["0"] += J1.T @ M @ J1 / X.shape[0]
        G["2"] += M / X.shape[0]
    return {name: (a.T @ a / X.shape[0], G[name]) for name, a in A.items()}


def _layer_index(name):
    """Flat index of each entry of vec(W̄), W̄ = [W, b] with columns stacked."""
    out, inp, w, b = LAYERS[name]
    return np.array([w + o * inp + j if j < inp else b + o for j in range(inp + 1) for o in range(out)])


def _block_diagonal(blocks):
    M = torch.zeros(26, 26, dtype=torch.float64)
    for name, block in blocks.items():
        index = _layer_index(name)
        M[np.ix_(index, index)] = block
    return M


@pytest.mark.parametrize("fisher_type", ["type-2", "empirical"])
def test_kfac_equals_the_dense_kronecker_reference_and_curvlinops(problem, fisher_type):
    X, y, model = problem.X, problem.y, problem.model
    factors = _factors(model, problem.loss_fn, X, y, fisher_type)
    reference = _block_diagonal({name: torch.kron(A, G) for name, (A, G) in factors.items()})
    op = KFACOperator(model, problem.loss_fn, (X, y), fisher_type=fisher_type)
    K = op.to_dense()
    torch.testing.assert_close(K, reference, rtol=0, atol=1e-12)
    theirs = KFACLinearOperator(model, _loss_module(problem.loss_fn), list(model.parameters()), [(X, y)],
                                check_deterministic=False, fisher_type=fisher_type, separate_weight_and_bias=False)
    torch.testing.assert_close(op @ _columns(), theirs @ _columns(), rtol=0, atol=1e-12)
    assert op.trace() == pytest.approx(float(K.trace()), rel=1e-12)
    if problem.loss_fn is nn.functional.mse_loss:  # cross-entropy's G is singular (its rows sum to zero)
        assert op.logdet() == pytest.approx(float(torch.linalg.slogdet(K)[1]), rel=1e-10)
    linear = op.to_scipy()
    V = np.random.default_rng(0).standard_normal((26, 3))
    assert isinstance(linear, LinearOperator) and linear.dtype == np.float64
    np.testing.assert_allclose(linear.matmat(V), K.numpy() @ V, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cls", [KFACOperator, EKFACOperator])
def test_separate_weight_and_bias_matches_curvlinops_and_leaves_the_vectors_alone(problem, cls):
    X, y, model = problem.X, problem.y, problem.model
    theirs = {KFACOperator: KFACLinearOperator, EKFACOperator: EKFACLinearOperator}[cls](
        model, _loss_module(problem.loss_fn), list(model.parameters()), [(X, y)], check_deterministic=False,
        fisher_type="type-2")
    op = cls(model, problem.loss_fn, (X, y), separate_weight_and_bias=True)
    V = _columns()
    before = V.clone()
    product = op @ V
    assert torch.equal(V, before)
    torch.testing.assert_close(product, theirs @ _columns(), rtol=0, atol=1e-12)
    assert torch.equal(op.inverse(0.1) @ V, op.inverse(0.1) @ before) and torch.equal(V, before)
    assert torch.count_nonzero(op.to_dense()[:12, 12:16]) == 0  # no weight-bias block within a layer


def test_kfac_of_one_linear_layer_with_mse_is_the_gauss_newton_matrix(problem):
    """M&G 2015: for s = W̄ā and a constant loss Hessian (2/C)·I, (1/N) Σ ā āᵀ ⊗ (2/C)I is the exact GGN."""
    torch.manual_seed(0)
    model = nn.Linear(3, 5).double()
    X = problem.X
    y = torch.randn(11, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    K = KFACOperator(model, nn.functional.mse_loss, (X, y)).to_dense()
    G = GaussNewtonOperator(model, nn.functional.mse_loss, (X, y)).to_dense()
    torch.testing.assert_close(K, G, rtol=0, atol=1e-14)


def test_ekfac_is_the_exact_block_diagonal_in_the_kronecker_eigenbasis(dense):
    """George et al. 2018: per layer Q diag(QᵀBQ) Qᵀ with Q = Q_A ⊗ Q_G the eigenvectors of K-FAC's factors and B the
    exact Gauss-Newton block (type-2), which EKFAC's per-example second moments sum to. Cross-entropy, since MSE's
    last-layer G is a multiple of I, whose eigenbasis (and with it EKFAC) is not unique."""
    torch.manual_seed(0)
    model, loss_fn = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double(), nn.functional.cross_entropy
    generator = torch.Generator().manual_seed(4)
    X, y = torch.randn(11, 3, generator=generator, dtype=torch.float64), torch.randint(0, 2, (11,), generator=generator)
    B = dense.gauss_newton(model, loss_fn, X, y)
    blocks = {}
    for name, (A, G) in _factors(model, loss_fn, X, y, "type-2").items():
        Q = torch.kron(torch.linalg.eigh(A).eigenvectors, torch.linalg.eigh(G).eigenvectors)
        index = _layer_index(name)
        blocks[name] = Q @ torch.diag(torch.diag(Q.T @ B[np.ix_(index, index)] @ Q)) @ Q.T
    op = EKFACOperator(model, loss_fn, (X, y))
    E = op.to_dense()
    torch.testing.assert_close(E, _block_diagonal(blocks), rtol=0, atol=1e-12)
    theirs = EKFACLinearOperator(model, nn.CrossEntropyLoss(), list(model.parameters()), [(X, y)],
                                 check_deterministic=False, fisher_type="type-2", separate_weight_and_bias=False)
    torch.testing.assert_close(op @ _columns(), theirs @ _columns(), rtol=0, atol=1e-12)
    assert op.trace() == pytest.approx(float(E.trace()), rel=1e-12)
    inverse = torch.linalg.inv(E + 0.1 * torch.eye(26, dtype=E.dtype))
    torch.testing.assert_close(op.inverse(0.1).to_dense(), inverse, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="only the exact damped inverse"):
        op.inverse(0.1, method="factored")


def test_monte_carlo_kfac_is_seeded_and_averages_to_type_2(problem):
    """1000 sampled targets per row: the relative error in Frobenius norm is 0.02%-2.5% over seeds 0-3."""
    X, y, model = problem.X, problem.y, problem.model
    exact = KFACOperator(model, problem.loss_fn, (X, y)).to_dense()
    sampled = [KFACOperator(model, problem.loss_fn, (X, y), fisher_type="mc", mc_samples=1000, random_state=seed)
               for seed in (0, 0, 1)]
    first, again, other = (op.to_dense() for op in sampled)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.linalg.norm(first - exact) < 0.05 * torch.linalg.norm(exact)


def test_kfac_inverses(problem):
    X, y, model = problem.X, problem.y, problem.model
    op = KFACOperator(model, problem.loss_fn, (X, y))
    K = op.to_dense()
    identity = torch.eye(26, dtype=torch.float64)
    torch.testing.assert_close(op.inverse(0.1).to_dense(), torch.linalg.inv(K + 0.1 * identity), rtol=0, atol=1e-10)
    factors = _factors(model, problem.loss_fn, X, y, "type-2")

    def kron_inverse(damp):
        return _block_diagonal({name: torch.kron(*(torch.linalg.inv(F + d * torch.eye(F.shape[0], dtype=F.dtype))
                                                   for F, d in zip((A, G), damp(A, G), strict=True)))
                                for name, (A, G) in factors.items()})

    torch.testing.assert_close(op.inverse(0.1, method="factored").to_dense(), kron_inverse(lambda A, G: (0.1, 0.1)),
                               rtol=0, atol=1e-10)
    torch.testing.assert_close(op.inverse((0.1, 0.3), method="factored").to_dense(),
                               kron_inverse(lambda A, G: (0.1, 0.3)), rtol=0, atol=1e-10)
    heuristic = _block_diagonal({name: torch.kron(*damped_inverses(A, G, 0.1)) for name, (A, G) in factors.items()})
    torch.testing.assert_close(op.inverse(0.1, method="heuristic").to_dense(), heuristic, rtol=0, atol=1e-10)
    for damping, method in ((0.0, "exact"), (-1.0, "exact"), ((0.1, 0.2), "exact"), (float("nan"), "factored"),
                            ((0.1, 0.0), "factored")):
        with pytest.raises(ValueError, match="damping must be"):
            op.inverse(damping, method=method)
    with pytest.raises(ValueError, match="method must be"):
        op.inverse(0.1, method="cholesky")


def test_kfac_selection_moved_point_micro_batches_and_the_model_left_alone(problem):
    X, y, model = problem.X, problem.y, problem.model
    before = copy.deepcopy(model.state_dict())
    full = KFACOperator(model, problem.loss_fn, (X, y)).to_dense()
    index = np.arange(16, 26)
    torch.testing.assert_close(KFACOperator(model, problem.loss_fn, (X, y), parameters="2.*").to_dense(),
                               full[np.ix_(index, index)], rtol=0, atol=1e-12)
    torch.testing.assert_close(KFACOperator(model, problem.loss_fn, [(X[:5], y[:5]), (X[5:], y[5:])],
                                            micro_batch_size=2).to_dense(), full, rtol=0, atol=1e-12)
    torch.testing.assert_close(KFACOperator(model, problem.loss_fn, (X, y), fisher_type="empirical",
                                            micro_batch_size=3).to_dense(),
                               KFACOperator(model, problem.loss_fn, (X, y), fisher_type="empirical").to_dense(),
                               rtol=0, atol=1e-12)
    moved = torch.nn.utils.parameters_to_vector(model.parameters()).detach() + 0.1
    other = copy.deepcopy(model)
    torch.nn.utils.vector_to_parameters(moved, other.parameters())
    torch.testing.assert_close(KFACOperator(model, problem.loss_fn, (X, y), at=moved).to_dense(),
                               KFACOperator(other, problem.loss_fn, (X, y)).to_dense(), rtol=0, atol=1e-12)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_kfac_refuses_what_it_cannot_approximate(problem):
    X, y = problem.X, problem.y
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2)).double().eval()
    with pytest.raises(ValueError, match=r"nn.Linear and nn.Conv2d layers only; \{'1.weight': 'BatchNorm1d'"):
        KFACOperator(model, problem.loss_fn, (X, y))
    assert KFACOperator(model, problem.loss_fn, (X, y), parameters=["0.*", "3.*"]).shape == (26, 26)
    with pytest.raises(ValueError, match="negative log-likelihood"):
        KFACOperator(problem.model, lambda out, t: problem.loss_fn(out, t), (X, y))
    with pytest.raises(ValueError, match="reduction='mean'"):
        KFACOperator(problem.model, nn.MSELoss(reduction="sum"), (X, y))
    torch.manual_seed(0)
    dropout = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.5), nn.Tanh(), nn.Linear(8, 2)).double()
    with pytest.raises(RuntimeError, match="not deterministic"):
        KFACOperator(dropout, problem.loss_fn, (X, y), check_deterministic=True)


def test_spectral_functions_take_curvlinops_operators(problem):
    model, X, y = problem.model, problem.X, problem.y
    theirs = HessianLinearOperator(model, _loss_module(problem.loss_fn), list(model.parameters()), [(X, y)],
                                   check_deterministic=False)
    ours = HessianOperator(model, problem.loss_fn, (X, y))
    result, expected = lanczos(theirs, 2, random_state=0), lanczos(ours, 2, random_state=0)
    np.testing.assert_allclose(result.values, expected.values, rtol=0, atol=1e-10)
    assert result.converged.all()
