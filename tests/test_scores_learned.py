"""LearnedScore (denoising score matching): accuracy against known scores, Stein's identity, the score protocol."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

from nnlift.moments import CrossMoment
from nnlift.scores import DensityScore, GaussianScore, StudentTMarginals, get_score, stein_check
from nnlift.scores.learned import LearnedScore


def _grouped_contractions(score, X, w, V, order, groups=50):
    """contract_chunk on `groups` slices of the rows: sum_r w_r S(x_r)(I, v, ..., v) per slice, stacked."""
    return torch.stack([score.contract_chunk(X[rows], w[rows], V, order)
                        for rows in torch.arange(X.shape[0]).chunk(groups)])


def _relative_errors(score, truth, X, seed=0):
    """Relative L2 error of the S1, S2, S3 contractions (random unit probes, random weights) over held-out rows.

    Each slice sum is one draw of a cross-moment with random targets, so the ratio is a relative L2(p) error of
    the per-row contractions, averaged over 50 slices to make it stable.
    """
    rng = np.random.default_rng(seed)
    V = rng.standard_normal((X.shape[1], 4))
    V = torch.as_tensor(V / np.linalg.norm(V, axis=0))
    w = torch.as_tensor(rng.standard_normal(X.shape[0]))
    errors = {}
    for order in (1, 2, 3):
        reference = _grouped_contractions(truth, X, w, V, order)
        errors[order] = float(torch.linalg.norm(_grouped_contractions(score, X, w, V, order) - reference)
                              / torch.linalg.norm(reference))
    return errors


@pytest.fixture(scope="module")
def gaussian_problem():
    """N(mu, Sigma) in d=4 with correlated coordinates (condition number ~20) and a score fitted on 8000 rows."""
    rng = np.random.default_rng(0)
    d = 4
    A = rng.standard_normal((d, d))
    cov = A @ A.T + 0.3 * np.eye(d)
    mean = np.array([1.0, -2.0, 0.5, 3.0])
    X = rng.multivariate_normal(mean, cov, size=8000)
    heldout = torch.as_tensor(rng.multivariate_normal(mean, cov, size=3000))
    score = LearnedScore(noise_scale=0.3, random_state=0).fit(X)
    return score, GaussianScore.from_parameters(mean, cov), X, heldout


@pytest.fixture(scope="module")
def student_problem():
    """Independent Student-t(5) coordinates, d=3: 8000 rows for fitting (the default sigma grid), 3000 held out."""
    rng = np.random.default_rng(1)
    X = rng.standard_t(5.0, size=(8000, 3))
    heldout = rng.standard_t(5.0, size=(3000, 3))
    score = LearnedScore(random_state=0).fit(X)
    return score, DensityScore(StudentTMarginals(df=5.0, loc=0.0, scale=1.0)), X, heldout


@pytest.fixture(scope="module")
def small_score():
    """A quickly trained score on d=3 rows (the consistency tests need any smooth fitted network)."""
    X = np.random.default_rng(2).standard_normal((600, 3)) @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3],
                                                                        [0.0, 0.0, 2.0]])
    return LearnedScore(hidden=(16, 16), noise_scale=0.3, max_epochs=5, random_state=0).fit(X), X


# -- accuracy ------------------------------------------------------------------------------------------------
def test_gaussian_inputs_recover_the_hermite_scores(gaussian_problem):
    """S1, S2, S3 on held-out rows against the exact Gaussian scores.

    The variance-preserving noise leaves a Gaussian unbiased at any sigma, so what remains is estimation error
    from 6400 training rows, largest in the tails where S3 ~ |z|^3 is big and data are few: over six seeds the
    errors were 0.05-0.07 (S1), 0.09-0.16 (S2), 0.15-0.20 (S3); a Gaussian fitted to the same rows (the right
    parametric family) reaches 0.02-0.04, 0.03-0.05, 0.03-0.07.
    """
    score, truth, _, heldout = gaussian_problem
    errors = _relative_errors(score, truth, heldout)
    assert errors[1] < 0.1 and errors[2] < 0.2 and errors[3] < 0.3, errors


def test_student_t_inputs_pass_steins_identity_where_the_gaussian_score_fails(student_problem):
    score, truth, X, heldout = student_problem
    for check in (score.diagnostics_["stein_check"], stein_check(score, heldout, random_state=0)):
        assert check["orders"][3]["z"] < 3.0, check
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gaussian = GaussianScore().fit(X)
    rows = torch.as_tensor(heldout)
    true_gradient = truth.log_density_gradient(rows)
    learned_error = float(torch.linalg.norm(score.log_density_gradient(rows) - true_gradient))
    gaussian_error = float(torch.linalg.norm(-torch.as_tensor(np.stack([gaussian.dense(x, 1) for x in heldout]))
                                             - true_gradient))
    assert learned_error < 0.5 * gaussian_error, (learned_error, gaussian_error)
    learned, parametric = _relative_errors(score, truth, rows), _relative_errors(gaussian, truth, rows)
    assert all(learned[m] < parametric[m] for m in (1, 2, 3)), (learned, parametric)


def test_diagnostics_report_the_choice_of_sigma(student_problem):
    score, _, X, _ = student_problem
    diagnostics = score.diagnostics_
    candidates = diagnostics["candidates"]
    assert [c["noise_scale"] for c in candidates] == [0.4, 0.2, 0.1]
    best = min(candidates, key=lambda c: c["heldout_hyvarinen"])
    assert diagnostics["noise_scale"] == score.noise_scale_ == best["noise_scale"]
    assert diagnostics["heldout_hyvarinen"] == best["heldout_hyvarinen"]
    assert diagnostics["train_rows"] + diagnostics["heldout_rows"] == len(X)
    assert diagnostics["stein_check"]["rows"] == diagnostics["heldout_rows"]
    assert 1 <= diagnostics["epochs"] <= score.max_epochs and diagnostics["train_seconds"] > 0
    assert set(diagnostics["stein_check"]["orders"]) == {1, 2, 3}


# -- the score protocol ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_contractions_equal_einsums_over_the_dense_tensors(small_score, order):
    score, X = small_score
    rng = np.random.default_rng(order)
    rows = X[:5]
    w = rng.standard_normal(5)
    V, U = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    dense = np.stack([score.dense(x, order) for x in rows])
    letters = "abc"[:order - 1]
    subscripts = ",".join(["r", "ri" + letters, *letters]) + "->i"
    expected = np.stack([np.einsum(subscripts, w, dense, *[v] * (order - 1)) for v in V.T], axis=1)
    t = {name: torch.as_tensor(a) for name, a in (("X", rows), ("w", w), ("V", V), ("U", U))}
    np.testing.assert_allclose(score.contract_chunk(t["X"], t["w"], t["V"], order).numpy(), expected,
                               rtol=1e-10, atol=1e-10 * np.abs(expected).max())
    if order >= 2:
        per_row = score.contract_rows(t["X"], t["w"], t["V"], order).sum(dim=0).numpy()
        np.testing.assert_allclose(per_row, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())
        projected = score.project_chunk(t["X"], t["w"], torch.eye(3, dtype=torch.float64), order).numpy()
        np.testing.assert_allclose(projected, np.einsum("r,r...->...", w, dense), rtol=1e-10, atol=1e-12)
        axes = list(range(1, order + 1))
        np.testing.assert_allclose(dense, np.swapaxes(dense, axes[0], axes[-1]), rtol=1e-10, atol=1e-12)
    if order == 3:
        pairs = np.einsum("r,rijk,jm,km->im", w, dense, V, U)
        np.testing.assert_allclose(score.contract_pairs_chunk(t["X"], t["w"], t["V"], t["U"]).numpy(), pairs,
                                   rtol=1e-10, atol=1e-10 * np.abs(pairs).max())


def test_gradient_is_the_chain_rule_through_the_whitening(small_score):
    """g(x) = -W grad E(W (x - mean)), checked against finite differences of the energy in x."""
    score, X = small_score
    params, mean, whitening = score._constants(torch.as_tensor(X))

    def log_density(x):
        return -torch.func.functional_call(score.network_, params, ((x - mean) @ whitening,))[:, 0]

    x = torch.as_tensor(X[:3])
    step = 1e-6
    numeric = torch.stack([(log_density(x + step * e) - log_density(x - step * e)) / (2 * step)
                           for e in torch.eye(3, dtype=torch.float64)], dim=1)
    np.testing.assert_allclose(score.log_density_gradient(x).numpy(), numeric.numpy(), rtol=1e-6, atol=1e-8)


def test_works_inside_cross_moment(small_score):
    score, X = small_score
    y = np.tanh(X @ np.array([1.0, -0.5, 0.3]))
    V = np.random.default_rng(3).standard_normal((3, 2))
    moment = CrossMoment(X, y, order=3, score=score)
    assert moment.score is score
    X_t, w = torch.as_tensor(X), torch.as_tensor(y - y.mean())
    np.testing.assert_allclose(moment.contract(V), score.contract_chunk(X_t, w, torch.as_tensor(V), 3).numpy()
                               / len(X), rtol=1e-10, atol=1e-12)
    fitted_inside = CrossMoment(X, y, order=3, score=LearnedScore(hidden=(8,), noise_scale=0.3, max_epochs=2,
                                                                  random_state=0))
    assert fitted_inside.score.is_fitted and fitted_inside.contract(V).shape == (3, 2)
    assert isinstance(get_score("learned"), LearnedScore)


def test_matches_the_dtype_and_is_differentiable_in_float32(small_score):
    score, X = small_score
    x32 = torch.as_tensor(X[:4], dtype=torch.float32)
    g32 = score.log_density_gradient(x32)
    assert g32.dtype == torch.float32
    np.testing.assert_allclose(g32.numpy(), score.log_density_gradient(torch.as_tensor(X[:4])).numpy(), rtol=1e-4,
                               atol=1e-5)
    assert score.contract_chunk(x32, torch.ones(4), torch.ones(3, 1), 3).dtype == torch.float32


# -- reproducibility and input checks ---------------------------------------------------------------------------
def _quick(**kwargs):
    return LearnedScore(hidden=(8, 8), max_epochs=2, noise_scale=(0.3, 0.2), random_state=0, **kwargs)


def test_reproducible_with_a_fixed_random_state_and_leaves_x_alone():
    X = np.random.default_rng(4).standard_normal((500, 2))
    original = X.copy()
    first, second = _quick().fit(X), _quick().fit(X)
    np.testing.assert_array_equal(X, original)
    x = torch.as_tensor(X[:20])
    assert torch.equal(first.log_density_gradient(x), second.log_density_gradient(x))
    assert first.diagnostics_["candidates"] == second.diagnostics_["candidates"]
    different = LearnedScore(hidden=(8, 8), max_epochs=2, noise_scale=(0.3, 0.2), random_state=1).fit(X)
    assert not torch.equal(first.log_density_gradient(x), different.log_density_gradient(x))


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((500, 3))
    with_nan = X.copy()
    with_nan[7, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        _quick().fit(with_nan)
    with pytest.raises(ValueError, match="2-D"):
        _quick().fit(X[:, 0])
    with pytest.raises(ValueError, match="at least 100 rows"):
        _quick().fit(X[:50])
    with pytest.raises(ValueError, match="singular"):
        _quick().fit(np.column_stack([X, X[:, 0]]))
    with pytest.raises(NotFittedError):
        _quick().log_density_gradient(torch.as_tensor(X))
    score = _quick(verbose=1).fit(X)
    with pytest.raises(ValueError, match="shape"):
        score.log_density_gradient(torch.as_tensor(X[:, :2]))


@pytest.mark.parametrize("kwargs, match", [
    ({"hidden": ()}, "hidden"), ({"hidden": (8, 0)}, "hidden"), ({"activation": "relu"}, "activation"),
    ({"noise_scale": 1.5}, "noise_scale"), ({"noise_scale": []}, "noise_scale"),
    ({"noise_scale": "big"}, "noise_scale"), ({"max_rows": 0}, "max_rows"),
    ({"validation_fraction": 1.0}, "validation_fraction"), ({"lr": -1.0}, "lr"),
    ({"weight_decay": -0.1}, "weight_decay"), ({"batch_size": 2.5}, "batch_size"),
    ({"random_state": -1}, "random_state")])
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LearnedScore(**kwargs)


def test_verbose_reports_each_noise_level_its_epochs_and_the_sigma_kept(capsys):
    X = np.random.default_rng(6).standard_normal((500, 2))
    _quick(verbose=1).fit(X)
    err = capsys.readouterr().err
    for expected in ("noise level 1/2 (sigma 0.3): started, 0/2 epochs", "noise level 2/2 (sigma 0.2)",
                     "ran all 2 epochs; best held-out loss", "held-out Hyvarinen objective",
                     "score matching: kept sigma"):
        assert expected in err
    _quick(verbose=0).fit(X)
    assert capsys.readouterr() == ("", "")


def test_verbose_says_when_a_noise_level_stopped_early(capsys):
    X = np.random.default_rng(6).standard_normal((500, 2))
    LearnedScore(hidden=(8,), max_epochs=30, patience=1, noise_scale=0.3, lr=1.0, random_state=0, verbose=1).fit(X)
    assert "stopped early after 3 of 30 epochs (no held-out gain for 1)" in capsys.readouterr().err
