"""Gaussian scores and cross-moment operators against brute-force references."""

import itertools
import math

import numpy as np
import pytest
import torch

from nnlift.moments import CrossMoment
from nnlift.scores import GaussianScore
from nnlift.scores.gaussian import NonGaussianInputWarning


def _autograd_score(x, mean, cov, order):
    """S_m(x) = (-1)^m grad^m p(x) / p(x) by nested autograd of the Gaussian density (independent reference)."""
    mean_t = torch.tensor(mean)
    prec = torch.linalg.inv(torch.tensor(cov))

    def density(v):
        c = v - mean_t
        return torch.exp(-0.5 * c @ prec @ c)

    fn = density
    for _ in range(order):
        fn = torch.func.jacfwd(fn)
    xt = torch.tensor(x)
    return ((-1) ** order * fn(xt) / density(xt)).numpy()


@pytest.fixture
def tiny_gaussian():
    rng = np.random.default_rng(0)
    d = 3
    A = rng.standard_normal((d, d))
    cov = A @ A.T + d * np.eye(d)
    mean = rng.standard_normal(d)
    return GaussianScore(mean, cov).fit(rng.multivariate_normal(mean, cov, size=500)), mean, cov, rng


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_dense_hermite_tensor_equals_autograd_score(tiny_gaussian, order):
    score, mean, cov, rng = tiny_gaussian
    x = rng.standard_normal(3)
    np.testing.assert_allclose(score.dense(x, order), _autograd_score(x, mean, cov, order), atol=1e-10)


def _brute_moment(score, X, y, order):
    w = y - y.mean()
    return sum(wi * score.dense(xi, order) for xi, wi in zip(X, w, strict=True)) / len(y)


@pytest.mark.parametrize("order", [2, 3, 4])
@pytest.mark.parametrize("chunk_rows", [7, 1000])
def test_operator_matches_dense_moment(tiny_gaussian, order, chunk_rows):
    score, mean, cov, rng = tiny_gaussian
    X = rng.multivariate_normal(mean, cov, size=60)
    y = np.tanh(X @ rng.standard_normal(3)) + 0.1 * rng.standard_normal(60)
    T = _brute_moment(score, X, y, order)
    op = CrossMoment(X, y, order=order, score=score, chunk_rows=chunk_rows)
    V = rng.standard_normal((3, 4))
    expected = np.stack([np.einsum(T, range(order), *sum(([v, [i]] for i in range(1, order)), []), [0])
                         for v in V.T], axis=1)
    np.testing.assert_allclose(op.contract(V), expected, atol=1e-10)
    Q = np.linalg.qr(rng.standard_normal((3, 2)))[0]
    operands = [T, list(range(order))] + sum(([Q, [i, order + i]] for i in range(order)), [])
    projected = np.einsum(*operands, [order + i for i in range(order)])
    np.testing.assert_allclose(op.project(Q), projected, atol=1e-10)
    np.testing.assert_allclose(op.project(np.eye(3)), T, atol=1e-10)
    if order == 3:
        U, W = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
        pairs = np.stack([np.einsum("abc,b,c->a", T, u, w) for u, w in zip(U.T, W.T, strict=True)], axis=1)
        np.testing.assert_allclose(op.contract_pairs(U, W), pairs, atol=1e-10)
    if order > 2:
        operands = [T, list(range(order))] + sum(([Q, [i, order + i]] for i in range(1, order)), [])
        image = np.einsum(*operands, [0] + [order + i for i in range(1, order)])
        np.testing.assert_allclose(op.contract_image(Q), image, atol=1e-10)
    assert op.passes == {2: 3, 3: 5, 4: 4}[order]


def test_float32_and_chunking_agree_with_float64():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((5000, 6))
    y = np.sin(X[:, 0]) + X[:, 1] ** 3
    V = rng.standard_normal((6, 3))
    ref = CrossMoment(X, y, order=3, chunk_rows=5000).contract(V)
    np.testing.assert_allclose(CrossMoment(X, y, order=3, chunk_rows=333).contract(V), ref, atol=1e-10)
    np.testing.assert_allclose(CrossMoment(X, y, order=3, dtype="float32").contract(V), ref, rtol=1e-3,
                               atol=1e-3 * np.abs(ref).max())


@pytest.mark.parametrize("order", [1, 2, 3])
def test_steins_identity_for_a_known_function(order):
    """E[f(x) S_m(x)] = E[grad^m f(x)] for f(x) = exp(b^T x) under N(mu, Sigma): grad^m f = f b^{⊗m}."""
    rng = np.random.default_rng(2)
    d, n = 4, 400_000
    mean = np.array([0.3, -0.2, 0.1, 0.0])
    L = np.tril(rng.standard_normal((d, d))) * 0.3 + np.eye(d)
    cov = L @ L.T
    X = mean + rng.standard_normal((n, d)) @ L.T
    b = np.array([0.4, -0.3, 0.2, 0.1])
    f = np.exp(X @ b)
    expected_scale = math.exp(b @ mean + 0.5 * b @ cov @ b)
    op = CrossMoment(X, f, order=max(order, 2), score=GaussianScore(mean, cov))
    V = rng.standard_normal((d, 3))
    V /= np.linalg.norm(V, axis=0)
    if order == 1:
        got = GaussianScore(mean, cov).fit(X[:10])
        Z = (X - mean) @ got.precision_
        estimate = (f[:, None] * Z).mean(axis=0)
        np.testing.assert_allclose(estimate, expected_scale * b, atol=5e-3)
        return
    if order == 2:
        expected = expected_scale * np.outer(b, b @ V)
    else:
        expected = expected_scale * np.outer(b, (b @ V) ** 2)
    estimate = op.contract(V)
    batches = [CrossMoment(X[i::20], f[i::20], order=order, score=GaussianScore(mean, cov)).contract(V)
               for i in range(20)]
    stderr = np.std(batches, axis=0) / np.sqrt(20)
    assert np.all(np.abs(estimate - expected) <= 4.5 * stderr + 1e-4)
    assert stderr.max() < 0.1 * np.abs(expected).max()  # the check has power


def test_mardia_flags_heavy_tails_and_passes_gaussian():
    rng = np.random.default_rng(3)
    with pytest.warns(NonGaussianInputWarning, match="do not look Gaussian"):
        GaussianScore().fit(rng.standard_t(3, size=(20000, 5)))
    score = GaussianScore().fit(rng.standard_normal((20000, 5)))
    assert abs(score.gaussianity_["kurtosis_z"]) < 4


def test_bad_inputs_are_refused_with_a_reason():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((100, 3))
    with pytest.raises(ValueError, match="1-D with 100"):
        CrossMoment(X, np.ones(99))
    with pytest.raises(ValueError, match="order"):
        CrossMoment(X, np.ones(100), order=5)
    bad = X.copy()
    bad[57, 1] = np.nan
    with pytest.raises(ValueError, match="row 57"):
        CrossMoment(bad, np.ones(100), score=GaussianScore(np.zeros(3), np.eye(3))).contract(np.eye(3))
    with pytest.raises(ValueError, match="singular"):
        GaussianScore().fit(np.column_stack([X, X[:, 0]]))
    with pytest.raises(ValueError, match="probes"):
        CrossMoment(X, np.ones(100)).contract(np.ones((4, 2)))


def test_inputs_are_not_mutated():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((200, 3))
    y = rng.standard_normal(200)
    X0, y0 = X.copy(), y.copy()
    op = CrossMoment(X, y, order=4)
    op.contract(np.eye(3))
    op.project(np.eye(3)[:, :2])
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)


def test_projected_order4_is_symmetric():
    rng = np.random.default_rng(6)
    X = rng.standard_normal((500, 4))
    y = np.tanh(X).sum(axis=1)
    T = CrossMoment(X, y, order=4).project(np.linalg.qr(rng.standard_normal((4, 3)))[0])
    for perm in itertools.permutations(range(4)):
        np.testing.assert_allclose(np.transpose(T, perm), T, atol=1e-12)


@pytest.mark.parametrize("order", [3, 4])
def test_per_row_terms_sum_to_the_chunk_contraction(tiny_gaussian, order):
    score, mean, cov, rng = tiny_gaussian
    X = torch.tensor(rng.multivariate_normal(mean, cov, size=40))
    w = torch.tensor(rng.standard_normal(40))
    V = torch.tensor(rng.standard_normal((3, 2)))
    rows = score.contract_rows(X, w, V, order)
    np.testing.assert_allclose(rows.sum(dim=0), score.contract_chunk(X, w, V, order), atol=1e-10)
    single = [score.contract_chunk(X[i:i + 1], w[i:i + 1], V, order) for i in range(3)]
    np.testing.assert_allclose(rows[:3], torch.stack(single), atol=1e-12)


def test_mardia_is_calibrated_when_d_is_a_large_fraction_of_n():
    """With the covariance estimated from the same rows, E[b2] = d(d+2)(n-1)/(n+1) (rescaled): no false alarm."""
    rng = np.random.default_rng(7)
    zs = [GaussianScore().fit(rng.standard_normal((2000, 200))).gaussianity_["kurtosis_z"] for _ in range(3)]
    assert max(abs(z) for z in zs) < 4


def test_raw_and_centred_streamed_kernels_agree(monkeypatch):
    """Up to SECOND_MOMENT_MAX_DIM the streamed contractions take their mean terms from sum w x x^T (raw kernel);
    above it, or when the features sit far from 0 for the working precision, each chunk centres (one column sum)."""
    import nnlift.moments as moments

    rng = np.random.default_rng(12)
    X = rng.standard_normal((4000, 5)) @ (np.eye(5) + 0.3 * rng.standard_normal((5, 5))) + 0.5
    y = np.tanh(X @ rng.standard_normal(5)) + 0.1 * rng.standard_normal(4000)
    U, W = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    raw = CrossMoment(X, y, order=3, chunk_rows=700)
    monkeypatch.setattr(moments, "SECOND_MOMENT_MAX_DIM", 4)
    centred = CrossMoment(X, y, order=3, chunk_rows=700)
    assert raw.sums.raw and not centred.sums.raw
    np.testing.assert_allclose(raw.contract(U), centred.contract(U), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(raw.contract_pairs(U, W), centred.contract_pairs(U, W), rtol=1e-10, atol=1e-12)
    monkeypatch.undo()
    offset = X + 1000.0  # rho ~ 1000 standard deviations: raw float32 would cancel away every digit
    far32 = CrossMoment(offset, y, order=3, chunk_rows=700, dtype="float32")
    far64 = CrossMoment(offset, y, order=3, chunk_rows=700)
    assert not far32.sums.raw and far64.sums.raw
    expected = centred.contract(U)
    np.testing.assert_allclose(far64.contract(U), expected, rtol=0, atol=1e-6 * np.abs(expected).max())
    np.testing.assert_allclose(far32.contract(U), expected, rtol=0, atol=1e-3 * np.abs(expected).max())
