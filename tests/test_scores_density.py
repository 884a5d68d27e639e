"""DensityScore, the ready-made densities, the autodiff score base and stein_check."""

import warnings

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from torch.func import jacfwd

from nnlift import LiftRegressor
from nnlift.datasets import GaussianMixtureInputs, StudentTInputs, make_teacher
from nnlift.metrics import weight_recovery
from nnlift.moments import CrossMoment
from nnlift.scores import (
    DensityScore,
    GaussianScore,
    MixtureScore,
    MultivariateT,
    NormalLaplaceMarginals,
    SmoothedUniformMarginals,
    StudentTMarginals,
    get_score,
    stein_check,
)
from nnlift.scores.autodiff import AutodiffScore

D = 3


def _densities():
    return {
        "student_t": StudentTMarginals(df=5.0, loc=[0.1, -0.2, 0.0], scale=[1.3, 0.8, 1.0]),
        "laplace": NormalLaplaceMarginals(shape=0.6, loc=0.0, scale=1.0),
        "uniform": SmoothedUniformMarginals(shape=0.8, loc=0.2, scale=0.9),
        "multivariate_t": MultivariateT(df=7.0, loc=np.zeros(D), scatter=np.eye(D) + 0.3),
    }


class _GeneralPath(DensityScore):
    """The same density through nested jvp only (no separable or closed-form shortcut)."""

    def marginal_derivatives(self, X):
        return None


def _reference_scores(density, x: np.ndarray, order: int) -> np.ndarray:
    """(-1)^m grad^m p / p by nested forward-mode autodiff of the density p itself (not of log p)."""
    def p(v):
        return torch.exp(density.log_prob(v[None]))[0]
    derivative = p
    for _ in range(order):
        derivative = jacfwd(derivative)
    x_t = torch.as_tensor(x)
    return ((-1) ** order * derivative(x_t) / p(x_t)).numpy()


@pytest.mark.parametrize("name", list(_densities()))
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_dense_scores_equal_derivatives_of_the_density(name, order):
    density = _densities()[name]
    score = DensityScore(density)
    for x in np.random.default_rng(order).standard_normal((3, D)) * 1.5:
        expected = _reference_scores(density, x, order)
        np.testing.assert_allclose(score.dense(x, order), expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max())


def test_first_and_second_scores_match_finite_differences_of_log_p():
    density = _densities()["laplace"]
    score = DensityScore(density)
    x, h = np.array([0.3, -0.7, 1.1]), 1e-4

    def log_p(v):
        return float(density.log_prob(torch.as_tensor(v)[None])[0])

    eye = np.eye(D) * h
    grad = np.array([(log_p(x + e) - log_p(x - e)) / (2 * h) for e in eye])
    hess = np.array([[(log_p(x + a + b) - log_p(x + a - b) - log_p(x - a + b) + log_p(x - a - b)) / (4 * h * h)
                      for b in eye] for a in eye])
    np.testing.assert_allclose(score.dense(x, 1), -grad, rtol=1e-7)
    np.testing.assert_allclose(score.dense(x, 2), np.outer(grad, grad) + hess, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(_densities()))
def test_contractions_equal_einsum_over_dense_and_the_general_path(name):
    rng = np.random.default_rng(0)
    score, general = DensityScore(_densities()[name]), _GeneralPath(_densities()[name])
    X = torch.as_tensor(rng.standard_normal((6, D)))
    w = torch.as_tensor(rng.standard_normal(6))
    V, U = (torch.as_tensor(rng.standard_normal((D, 4))) for _ in range(2))
    X_before = X.clone()
    dense = {m: np.stack([score.dense(x, m) for x in X.numpy()]) for m in (2, 3, 4)}
    wn, Vn, Un = w.numpy(), V.numpy(), U.numpy()
    expected = {2: np.einsum("r,rab,bm->am", wn, dense[2], Vn),
                3: np.einsum("r,rabc,bm,cm->am", wn, dense[3], Vn, Vn),
                4: np.einsum("r,rabcd,bm,cm,dm->am", wn, dense[4], Vn, Vn, Vn)}
    for candidate in (score, general):
        for order in (2, 3, 4):
            np.testing.assert_allclose(candidate.contract_chunk(X, w, V, order).numpy(), expected[order], atol=1e-10)
            np.testing.assert_allclose(candidate.project_chunk(X, w, V, order).numpy(),
                                       general.project_chunk(X, w, V, order).numpy(), atol=1e-10)
        for order in (3, 4):
            np.testing.assert_allclose(candidate.contract_rows(X, w, V, order).sum(dim=0).numpy(), expected[order],
                                       atol=1e-10)
        pairs = np.einsum("r,rabc,bm,cm->am", wn, dense[3], Un, Vn)
        np.testing.assert_allclose(candidate.contract_pairs_chunk(X, w, U, V).numpy(), pairs, atol=1e-10)
    torch.testing.assert_close(X, X_before)


@pytest.mark.parametrize("name", ["student_t", "laplace", "uniform"])
def test_marginal_densities_integrate_to_one(name):
    density = _densities()[name]
    for j in range(D):
        def p(v, j=j):
            x = torch.zeros(1, D, dtype=torch.float64)
            x[0, j] = v
            return float(torch.exp(density.marginal_log_prob(x)[0, j]))
        total, _ = integrate.quad(p, -np.inf, np.inf, limit=200)
        assert total == pytest.approx(1.0, abs=1e-7)


def test_log_densities_match_scipy():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((20, D)) * 2
    t = _densities()["student_t"]
    expected = stats.t.logpdf(X, 5.0, loc=[0.1, -0.2, 0.0], scale=[1.3, 0.8, 1.0]).sum(axis=1)
    np.testing.assert_allclose(t.log_prob(torch.as_tensor(X)).numpy(), expected, rtol=1e-12)
    mvt = _densities()["multivariate_t"]
    expected = stats.multivariate_t(loc=np.zeros(D), shape=np.eye(D) + 0.3, df=7.0).logpdf(X)
    np.testing.assert_allclose(mvt.log_prob(torch.as_tensor(X)).numpy(), expected, rtol=1e-12)


def test_fit_recovers_the_parameters_of_each_family():
    rng = np.random.default_rng(2)
    X = 0.5 + 2.0 * rng.standard_t(6.0, size=(20_000, 2))
    before = X.copy()
    t = StudentTMarginals(random_state=0).fit(X)
    np.testing.assert_allclose(t.df_, 6.0, rtol=0.2)
    np.testing.assert_allclose(t.loc_, 0.5, atol=0.05)
    np.testing.assert_allclose(t.scale_, 2.0, rtol=0.05)
    np.testing.assert_array_equal(X, before)
    for family, shape in ((NormalLaplaceMarginals, 0.7), (SmoothedUniformMarginals, 0.8)):
        sample = family(shape=shape, loc=1.0, scale=2.0).sample(50_000, d=2, random_state=3)
        fitted = family(max_rows=50_000, random_state=0).fit(sample)
        np.testing.assert_allclose(fitted.shape_, shape, atol=0.05)
        np.testing.assert_allclose(fitted.scale_, 2.0, rtol=0.02)
        np.testing.assert_allclose(fitted.loc_, 1.0, atol=0.03)
    mvt = MultivariateT(df=8.0, loc=np.zeros(4), scatter=np.eye(4)).sample(100_000, random_state=4)
    assert MultivariateT(max_rows=100_000, random_state=0).fit(mvt).df_ == pytest.approx(8.0, rel=0.25)


def test_unfitted_density_and_bad_input_are_refused():
    with pytest.raises(ValueError, match="call fit"):
        StudentTMarginals().log_prob(torch.zeros(2, 3))
    X = np.random.default_rng(0).standard_normal((100, 3))
    X[7, 1] = np.nan
    with pytest.raises(ValueError, match="row 7"):
        DensityScore(StudentTMarginals()).fit(X)
    with pytest.raises(ValueError, match="scale must be positive"):
        StudentTMarginals(df=5.0, loc=0.0, scale=-1.0).log_prob(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="pass d"):
        StudentTMarginals(df=5.0, loc=0.0, scale=1.0).sample(10)


def test_get_score_names_and_protocol():
    assert isinstance(get_score("student_t"), DensityScore)
    assert isinstance(get_score("mixture"), MixtureScore)
    assert isinstance(get_score("gaussian"), GaussianScore)
    with pytest.raises(ValueError, match="unknown score"):
        get_score("cauchy")
    with pytest.raises(TypeError, match="lacks"):
        get_score(object())
    assert not get_score("student_t").is_fitted
    assert DensityScore(lambda X: -(X**2).sum(dim=1) / 2).is_fitted
    with pytest.raises(NotImplementedError):
        AutodiffScore().contract_chunk(torch.zeros(2, 2), torch.ones(2), torch.ones(2, 1), 3)


def test_a_plain_callable_log_density_gives_the_gaussian_scores():
    rng = np.random.default_rng(3)
    cov = np.array([[1.0, 0.3, 0.0], [0.3, 2.0, 0.4], [0.0, 0.4, 0.5]])
    precision = torch.as_tensor(np.linalg.inv(cov))
    score = DensityScore(lambda X: -0.5 * ((X @ precision) * X).sum(dim=1))
    gaussian = GaussianScore.from_parameters(np.zeros(3), cov)
    X = torch.as_tensor(rng.standard_normal((30, 3)))
    w, V = torch.as_tensor(rng.standard_normal(30)), torch.as_tensor(rng.standard_normal((3, 5)))
    for order in (1, 2, 3, 4):
        torch.testing.assert_close(score.contract_chunk(X, w, V, order), gaussian.contract_chunk(X, w, V, order))
    torch.testing.assert_close(score.project_chunk(X, w, V[:, :2], 4), gaussian.project_chunk(X, w, V[:, :2], 4))


def test_cross_moment_with_a_density_score_equals_the_brute_force_moment():
    rng = np.random.default_rng(4)
    X = StudentTInputs(5.0)(rng, 200, D)
    y = np.sin(X @ rng.standard_normal(D))
    score = DensityScore(StudentTMarginals(df=5.0, loc=0.0, scale=StudentTInputs(5.0).scale))
    moment = CrossMoment(X, y, order=3, score=score, chunk_rows=37)
    V = rng.standard_normal((D, 2))
    dense = np.stack([score.dense(x, 3) for x in X])
    expected = np.einsum("r,rabc,bm,cm->am", y - y.mean(), dense, V, V) / len(y)
    np.testing.assert_allclose(moment.contract(V), expected, atol=1e-12)
    Q = np.linalg.qr(V)[0]
    image = np.einsum("r,rabc,bi,cj->aij", y - y.mean(), dense, Q, Q) / len(y)
    np.testing.assert_allclose(moment.contract_image(Q), image, atol=1e-12)  # through polarization probes


@pytest.mark.parametrize("name", ["student_t", "uniform", "multivariate_t"])
def test_stein_identity_holds_for_the_right_score(name):
    density = _densities()[name]
    X = density.sample(20_000, random_state=5) if name == "multivariate_t" else density.sample(20_000, d=D,
                                                                                                random_state=5)
    check = stein_check(DensityScore(density), X, random_state=0)
    for order, result in check["orders"].items():
        assert result["z"] < 3.5, (order, result)
        assert result["noise"] < 0.25


def test_stein_identity_fails_for_the_gaussian_score_on_heavy_tails():
    X = StudentTInputs(3.0)(np.random.default_rng(6), 100_000, D)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gaussian = GaussianScore().fit(X)
    check = stein_check(gaussian, X, orders=(1, 2), max_rows=100_000, random_state=0)
    assert check["orders"][1]["z"] > 6 and check["orders"][1]["relative_error"] > 0.1
    right = stein_check(DensityScore(StudentTMarginals(df=3.0, loc=0.0, scale=StudentTInputs(3.0).scale)), X,
                        orders=(1, 2), max_rows=100_000, random_state=0)
    assert right["orders"][1]["z"] < 3.5


def test_planted_student_t_teacher_needs_its_score():
    """With Student-t inputs the Gaussian score's tensor has the wrong components; the right score recovers them."""
    teacher = make_teacher(60_000, 6, 3, "tanh", weight_scale=1.5, random_state=0, inputs=StudentTInputs(5.0))
    recovery = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ("gaussian", "student_t"):
            model = LiftRegressor(3, activation="tanh", score_function=name, finetune=False, random_state=0)
            recovery[name] = weight_recovery(teacher.first_layer, model.fit(teacher.X, teacher.y).first_layer_).min
    assert recovery["student_t"] > 0.97
    assert recovery["gaussian"] < 0.9


def test_teacher_input_samplers():
    rng = np.random.default_rng(7)
    t = StudentTInputs(6.0)(rng, 200_000, 2)
    np.testing.assert_allclose(t.var(axis=0), 1.0, rtol=0.05)
    mixture = GaussianMixtureInputs.random(4, 3, separation=2.0, random_state=0)
    X = mixture(rng, 100_000, 4)
    np.testing.assert_allclose(X.mean(axis=0), 0.0, atol=0.03)
    expected_cov = np.einsum("c,cij->ij", mixture.weights, mixture.covariances
                             + np.einsum("ci,cj->cij", mixture.means, mixture.means))
    np.testing.assert_allclose(np.cov(X, rowvar=False), expected_cov, atol=0.05)
    with pytest.raises(ValueError, match="features"):
        mixture(rng, 5, 3)
