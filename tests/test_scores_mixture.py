"""Gaussian-mixture scores against autograd, finite differences, Stein's identity and brute-force contractions."""

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.exceptions import NotFittedError

from nnlift.moments import CrossMoment
from nnlift.scores.gaussian import GaussianScore, NonGaussianInputWarning
from nnlift.scores.mixture import MixtureScore


def _random_mixture(d, n_components, seed, spread=2.0):
    """Weights, means and random SPD covariances of a mixture whose components overlap."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(5.0 * np.ones(n_components))
    means = spread * rng.standard_normal((n_components, d))
    A = rng.standard_normal((n_components, d, d))
    covs = A @ A.transpose(0, 2, 1) / d + 0.5 * np.eye(d)
    return weights, means, covs


def _sample(weights, means, covs, n, rng):
    labels = rng.choice(len(weights), size=n, p=weights)
    noise = np.einsum("nij,nj->ni", np.linalg.cholesky(covs)[labels], rng.standard_normal((n, means.shape[1])))
    return means[labels] + noise


def _scipy_log_density(X, weights, means, covs):
    """log p(x) of the mixture by scipy (an independent reference)."""
    parts = [np.log(w) + multivariate_normal(m, c).logpdf(X) for w, m, c in zip(weights, means, covs, strict=True)]
    return logsumexp(np.stack(parts, axis=-1), axis=-1)


def _autograd_score(x, weights, means, covs, order):
    """(-1)^m grad^m p(x) / p(x) by nested autograd of the mixture density p itself (not log p)."""
    mu = torch.tensor(means)
    prec = torch.linalg.inv(torch.tensor(covs))
    scale = torch.tensor(weights) / torch.sqrt(torch.linalg.det(2.0 * math.pi * torch.tensor(covs)))

    def density(v):
        c = v - mu
        return (scale * torch.exp(-0.5 * torch.einsum("ci,cij,cj->c", c, prec, c))).sum()

    fn = density
    for _ in range(order):
        fn = torch.func.jacfwd(fn)
    xt = torch.tensor(x)
    return ((-1) ** order * fn(xt) / density(xt)).numpy()


@pytest.fixture(scope="module")
def mixture3():
    weights, means, covs = _random_mixture(3, 3, seed=0)
    return MixtureScore.from_parameters(weights, means, covs), (weights, means, covs)


# -- the score tensors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_dense_equals_autograd_of_the_density(mixture3, order):
    score, params = mixture3
    rng = np.random.default_rng(1)
    points = params[1].mean(axis=0) + rng.standard_normal((4, 3))
    resp = score.responsibilities(torch.tensor(points)).numpy()
    assert resp.max(axis=1).min() < 0.9  # points where the components really mix
    for x in points:
        ref = _autograd_score(x, *params, order)
        np.testing.assert_allclose(score.dense(x, order), ref, rtol=1e-8, atol=1e-8 * np.abs(ref).max())


def test_first_two_scores_match_finite_differences_of_log_density():
    weights, means, covs = _random_mixture(2, 3, seed=2)
    score = MixtureScore.from_parameters(weights, means, covs)
    x = means.mean(axis=0) + 0.3
    logp = lambda v: _scipy_log_density(v, weights, means, covs)  # noqa: E731
    h1, h2, E = 1e-5, 1e-4, np.eye(2)
    grad = np.array([(logp(x + h1 * e) - logp(x - h1 * e)) / (2 * h1) for e in E])
    hess = np.array([[(logp(x + h2 * (a + b)) - logp(x + h2 * (a - b)) - logp(x - h2 * (a - b))
                       + logp(x - h2 * (a + b))) / (4 * h2**2) for b in E] for a in E])
    np.testing.assert_allclose(score.dense(x, 1), -grad, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(score.dense(x, 2), np.outer(grad, grad) + hess, rtol=1e-5, atol=1e-6)


def test_log_prob_and_responsibilities_match_scipy_and_stay_finite_far_away(mixture3):
    score, params = mixture3
    X = np.random.default_rng(3).standard_normal((20, 3)) * 3
    np.testing.assert_allclose(score.log_prob(torch.tensor(X)).numpy(), _scipy_log_density(X, *params), rtol=1e-12)
    parts = np.stack([np.log(w) + multivariate_normal(m, c).logpdf(X) for w, m, c in zip(*params, strict=True)], 1)
    np.testing.assert_allclose(score.responsibilities(torch.tensor(X)).numpy(),
                               np.exp(parts - logsumexp(parts, axis=1, keepdims=True)), rtol=1e-10)
    far = torch.full((1, 3), 1e3, dtype=torch.float64)
    resp = score.responsibilities(far)
    assert torch.isfinite(resp).all() and float(resp.sum()) == pytest.approx(1.0)
    assert torch.isfinite(score.log_prob(far)).all()
    assert np.isfinite(score.dense(far.numpy()[0], 4)).all()


# -- chunk contractions against the dense tensors ----------------------------------------------------------
def _apply(T, vectors):
    """T(I, v_1, ..., v_j): contract the trailing axes of T (or of each row of a stack) with the vectors."""
    for v in reversed(vectors):
        T = T @ v
    return T


def _project(T, Q):
    for _ in range(T.ndim):
        T = np.tensordot(T, Q, axes=([0], [0]))
    return T


@pytest.fixture(scope="module")
def rows4():
    weights, means, covs = _random_mixture(4, 3, seed=4)
    score = MixtureScore.from_parameters(weights, means, covs)
    rng = np.random.default_rng(5)
    X = _sample(weights, means, covs, 50, rng)
    w = rng.standard_normal(50)
    dense = {m: np.stack([score.dense(x, m) for x in X]) for m in (1, 2, 3, 4)}
    return score, X, w, dense, rng


def _torch(*arrays):
    return [torch.tensor(a) for a in arrays]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_contract_chunk_equals_dense_sum(rows4, order):
    score, X, w, dense, rng = rows4
    V = rng.standard_normal((4, 3))
    Xt, wt, Vt = _torch(X, w, V)
    copies = [a.clone() for a in (Xt, wt, Vt)]
    weighted = np.tensordot(w, dense[order], axes=1)
    expected = np.stack([_apply(weighted, [v] * (order - 1)) for v in V.T], axis=1)
    np.testing.assert_allclose(score.contract_chunk(Xt, wt, Vt, order).numpy(), expected, atol=1e-10)
    assert all(torch.equal(a, b) for a, b in zip((Xt, wt, Vt), copies, strict=True))


@pytest.mark.parametrize("order", [2, 3, 4])
def test_project_chunk_equals_dense_sum(rows4, order):
    score, X, w, dense, rng = rows4
    Q = np.linalg.qr(rng.standard_normal((4, 2)))[0]
    expected = _project(np.tensordot(w, dense[order], axes=1), Q)
    np.testing.assert_allclose(score.project_chunk(*_torch(X, w, Q), order).numpy(), expected, atol=1e-10)


@pytest.mark.parametrize("order", [3, 4])
def test_contract_rows_equals_dense_rows(rows4, order):
    score, X, w, dense, rng = rows4
    V = rng.standard_normal((4, 3))
    expected = np.stack([w[:, None] * _apply(dense[order], [v] * (order - 1)) for v in V.T], axis=2)
    np.testing.assert_allclose(score.contract_rows(*_torch(X, w, V), order).numpy(), expected, atol=1e-10)


def test_contract_pairs_chunk_equals_dense_sum(rows4):
    score, X, w, dense, rng = rows4
    U, W = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    weighted = np.tensordot(w, dense[3], axes=1)
    expected = np.stack([_apply(weighted, [u, v]) for u, v in zip(U.T, W.T, strict=True)], axis=1)
    np.testing.assert_allclose(score.contract_pairs_chunk(*_torch(X, w, U, W)).numpy(), expected, atol=1e-10)


def test_float32_agrees_with_float64(rows4):
    score, X, w, _, rng = rows4
    V, Q = rng.standard_normal((4, 3)), np.linalg.qr(rng.standard_normal((4, 2)))[0]
    calls = [lambda s, X, w, V, Q: s.log_prob(X), lambda s, X, w, V, Q: s.responsibilities(X),
             lambda s, X, w, V, Q: s.contract_pairs_chunk(X, w, V, V)]
    calls += [lambda s, X, w, V, Q, m=m: s.contract_chunk(X, w, V, m) for m in (1, 2, 3, 4)]
    calls += [lambda s, X, w, V, Q, m=m: s.project_chunk(X, w, Q, m) for m in (2, 3, 4)]
    calls += [lambda s, X, w, V, Q, m=m: s.contract_rows(X, w, V, m) for m in (3, 4)]
    args64 = _torch(X, w, V, Q)
    args32 = [a.float() for a in args64]
    for call in calls:
        ref, got = call(score, *args64), call(score, *args32)
        assert got.dtype == torch.float32
        np.testing.assert_allclose(got.double().numpy(), ref.numpy(), rtol=1e-4, atol=1e-4 * ref.abs().max().item())


# -- Stein's identity -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stein_data():
    """A 3-component mixture in d=3, 300k samples, and f(x) = sin(a.x) + 0.3 (b.x)^3 at the samples."""
    weights = np.array([0.45, 0.35, 0.2])
    means = np.array([[-0.9, 0.5, -0.1], [2.1, 1.5, -0.6], [0.6, -1.0, -1.6]])
    _, _, covs = _random_mixture(3, 3, seed=6)
    X = _sample(weights, means, covs, 300_000, np.random.default_rng(7))
    a, b = np.array([0.8, -0.5, 0.3]), np.array([0.3, 0.2, -0.4])
    f = np.sin(X @ a) + 0.3 * (X @ b) ** 3
    damp = np.exp(-0.5 * np.einsum("i,cij,j->c", a, covs, a))
    moments = {"cos": weights @ (np.cos(means @ a) * damp), "sin": weights @ (np.sin(means @ a) * damp),
               "bx": weights @ (means @ b), "bx2": weights @ ((means @ b) ** 2 + np.einsum("i,cij,j->c", b, covs, b))}
    return MixtureScore.from_parameters(weights, means, covs), X, f, a, b, moments


def _exact_derivative_moment(order, V, a, b, e):
    """E[grad^m f(x)](I, v, ..., v) per column v, from the closed-form mixture expectations e."""
    av, bv = a @ V, b @ V
    if order == 1:
        return np.outer(e["cos"] * a + 0.9 * e["bx2"] * b, np.ones(V.shape[1]))
    if order == 2:
        return -e["sin"] * np.outer(a, av) + 1.8 * e["bx"] * np.outer(b, bv)
    return -e["cos"] * np.outer(a, av**2) + 1.8 * np.outer(b, bv**2)


def _estimate_with_stderr(score, X, f, V, order, batches=40):
    """The mean of f(x) S_m(x)(I, v, ..., v) over the rows and its standard error from interleaved batches."""
    Vt = torch.tensor(V)
    means = np.stack([score.contract_chunk(torch.tensor(X[i::batches]), torch.tensor(f[i::batches]), Vt,
                                           order).numpy() / len(f[i::batches]) for i in range(batches)])
    return means.mean(axis=0), means.std(axis=0, ddof=1) / math.sqrt(batches)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_steins_identity_holds_for_the_mixture_score(stein_data, order):
    score, X, f, a, b, moments = stein_data
    V = np.random.default_rng(8).standard_normal((3, 4))
    V /= np.linalg.norm(V, axis=0)
    expected = _exact_derivative_moment(order, V, a, b, moments)
    estimate, stderr = _estimate_with_stderr(score, X, f, V, order)
    assert np.all(np.abs(estimate - expected) <= 4.5 * stderr)
    assert stderr.max() < 0.1 * np.abs(expected).max()  # the check has power


def test_gaussian_score_violates_steins_identity_on_mixture_data(stein_data):
    _, X, f, a, b, moments = stein_data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonGaussianInputWarning)
        gaussian = GaussianScore().fit(X)
    V = np.random.default_rng(8).standard_normal((3, 4))
    V /= np.linalg.norm(V, axis=0)
    estimate, stderr = _estimate_with_stderr(gaussian, X, f, V, 3)
    assert np.max(np.abs(estimate - _exact_derivative_moment(3, V, a, b, moments)) / stderr) > 20


# -- fitting --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def separated():
    weights = np.array([0.5, 0.3, 0.2])
    means = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 0.0], [0.0, 6.0, 2.0]])
    _, _, covs = _random_mixture(3, 3, seed=9)
    X = _sample(weights, means, covs, 4000, np.random.default_rng(10))
    return X, weights, means, covs


def test_bic_picks_the_true_number_of_components(separated):
    X, weights, means, covs = separated
    X0 = X.copy()
    X.setflags(write=False)
    score = MixtureScore(max_components=5, max_rows=3000, random_state=0).fit(X)
    X.setflags(write=True)
    np.testing.assert_array_equal(X, X0)
    assert score.is_fitted and score.n_components_ == 3 and sorted(score.bic_) == [1, 2, 3, 4, 5]
    assert min(score.bic_, key=score.bic_.get) == 3
    rows, cols = linear_sum_assignment(((score.means_[:, None] - means[None]) ** 2).sum(axis=2))
    np.testing.assert_allclose(score.weights_[rows], weights[cols], atol=0.03)
    np.testing.assert_allclose(score.means_[rows], means[cols], atol=0.15)
    np.testing.assert_allclose(score.covariances_[rows], covs[cols], atol=0.25)
    diag = score.diagnostics_
    assert diag["n_components"] == 3 and diag["rows_used"] == 3000 and diag["heldout_rows"] == 1000
    assert diag["bic"] == score.bic_[3]
    truth = _scipy_log_density(X, weights, means, covs).mean()
    assert diag["heldout_log_likelihood"] == pytest.approx(truth, abs=0.1)


def test_fit_reads_every_source_alike_and_converts_covariance_types(separated):
    import dask.array as da

    X = separated[0]
    kwargs = dict(n_components=2, max_rows=1500, random_state=1)
    ref = MixtureScore(**kwargs).fit(X)
    assert ref.n_components_ == 2 and ref.bic_ is None and ref.weights_.shape == (2,)
    sources = [(X, 333), (torch.tensor(X), 1000), (da.from_array(X, chunks=700), 500),
               (lambda: ((X[i:i + 900], None) for i in range(0, 4000, 900)), 10_000)]
    for source, chunk_rows in sources:
        got = MixtureScore(**kwargs).fit(source, chunk_rows=chunk_rows)
        np.testing.assert_allclose(got.means_, ref.means_, rtol=1e-12)
        assert got.diagnostics_ == ref.diagnostics_
    small = MixtureScore(n_components=2, max_rows=5000).fit(X[:200])
    assert small.diagnostics_["rows_used"] == 200 and small.diagnostics_["heldout_log_likelihood"] is None
    for kind in ("tied", "diag", "spherical"):
        cov = MixtureScore(covariance_type=kind, **kwargs).fit(X).covariances_
        assert cov.shape == (2, 3, 3)
        if kind != "tied":
            np.testing.assert_array_equal(cov, cov * np.eye(3))


def test_bad_inputs_are_refused_with_a_reason(separated):
    X = separated[0]
    bad = X.copy()
    bad[57, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf at row 57"):
        MixtureScore().fit(bad)
    with pytest.raises(ValueError, match="2-D"):
        MixtureScore().fit(X[:, 0])
    for kwargs, message in [({"n_components": 0}, "n_components"), ({"n_components": "aic"}, "'bic'"),
                            ({"covariance_type": "bogus"}, "covariance_type"), ({"max_rows": 0}, "max_rows"),
                            ({"reg_covar": -1.0}, "reg_covar"), ({"random_state": 1.5}, "random_state")]:
        with pytest.raises(ValueError, match=message):
            MixtureScore(**kwargs)
    with pytest.raises(ValueError, match="needs at least"):
        MixtureScore(n_components=5).fit(X[:3])
    weights, means, covs = _random_mixture(3, 2, seed=11)
    with pytest.raises(ValueError, match="sum to 1"):
        MixtureScore.from_parameters(weights * 2, means, covs)
    with pytest.raises(ValueError, match="shape"):
        MixtureScore.from_parameters(weights, means[:, :2], covs)
    with pytest.raises(ValueError, match="positive definite"):
        MixtureScore.from_parameters(weights, means, covs - 10 * np.eye(3))
    with pytest.raises(NotFittedError, match="not fitted"):
        MixtureScore().log_prob(torch.zeros((2, 3)))
    with pytest.raises(ValueError, match="shape"):
        MixtureScore.from_parameters(weights, means, covs).log_prob(torch.zeros((2, 4)))


# -- inside the cross-moment operator --------------------------------------------------------------------
@pytest.mark.parametrize("chunk_rows", [7, 1000])
def test_cross_moment_with_mixture_score_matches_brute_force(chunk_rows):
    weights, means, covs = _random_mixture(3, 3, seed=12)
    score = MixtureScore.from_parameters(weights, means, covs)
    rng = np.random.default_rng(13)
    X = _sample(weights, means, covs, 200, rng)
    y = np.tanh(X @ rng.standard_normal(3)) + 0.1 * rng.standard_normal(200)
    D = np.stack([score.dense(x, 3) for x in X])
    T = np.tensordot(y - y.mean(), D, axes=1) / len(y)
    op = CrossMoment(X, y, order=3, score=score, chunk_rows=chunk_rows)
    assert op.score is score
    V, U, Q = rng.standard_normal((3, 4)), rng.standard_normal((3, 4)), np.linalg.qr(rng.standard_normal((3, 2)))[0]
    np.testing.assert_allclose(op.contract(V), np.stack([_apply(T, [v, v]) for v in V.T], axis=1), atol=1e-10)
    np.testing.assert_allclose(op.contract_pairs(U, V),
                               np.stack([_apply(T, [u, v]) for u, v in zip(U.T, V.T, strict=True)], axis=1),
                               atol=1e-10)
    np.testing.assert_allclose(op.project(Q), _project(T, Q), atol=1e-10)
    rows = (y[:50, None, None] - y.mean()) * np.stack([_apply(D[:50], [v, v]) for v in V.T], axis=2)
    np.testing.assert_allclose(op.row_norm_sq(V, max_rows=50), (rows**2).sum(axis=1).mean(axis=0), rtol=1e-10)
