"""Wilson et al. (2017) Sec. 3.3: gradient methods reach the minimum-norm solution, adaptive ones sign(X^T y)."""

import json

import numpy as np
import pytest

from nnlift.bias.adaptive import fit_least_squares, lemma_holds, wilson_features, wilson_problem
from nnlift.reproduce import adaptive_generalization


def test_features_follow_the_paper_recipe():
    X = wilson_features([1.0, -1.0, 1.0]).toarray()
    assert X.shape == (3, 3 + 5 * 3)
    np.testing.assert_array_equal(X[:, :3], [[1, 1, 1], [-1, 1, 1], [1, 1, 1]])
    np.testing.assert_array_equal(X[0, 3:8], [1, 0, 0, 0, 0])  # y = +1: one feature of its own
    np.testing.assert_array_equal(X[1, 8:13], [1, 1, 1, 1, 1])  # y = -1: five
    np.testing.assert_array_equal(X[2, 13:18], [1, 0, 0, 0, 0])
    assert X[:, 3:].sum(axis=0).max() == 1  # no point shares those
    test = wilson_features([-1.0], first_point=3)
    assert test.shape == (1, 23) and test[:, :18].nnz == 3  # a new point only shares the first three columns
    with pytest.raises(ValueError, match="-1 / \\+1"):
        wilson_features([0.0, 1.0])


def test_lemma_condition_needs_more_positive_labels():
    y = np.array([1.0, 1.0, -1.0])
    X = wilson_features(y).toarray()
    used = X[:, np.any(X != 0, axis=0)]
    np.testing.assert_allclose(used @ np.sign(used.T @ y), 4 * y)  # c = 4
    assert lemma_holds(X, y)
    assert not lemma_holds(wilson_features(-y).toarray(), -y)  # more -1 labels
    assert not lemma_holds(wilson_features([1.0, -1.0]).toarray(), np.array([1.0, -1.0]))  # X^T y has a 0


def test_gradient_methods_reach_min_norm_and_adaptive_ones_sign_solution():
    problems = [wilson_problem(30, 0.7, n_test=300, random_state=seed) for seed in range(3)]
    X, y = np.stack([q.X for q in problems]), np.stack([q.y for q in problems])
    assert all(lemma_holds(q.X, q.y) for q in problems)
    min_norm = np.stack([np.linalg.pinv(q.X) @ q.y for q in problems])
    signs = np.sign(np.einsum("snd,sn->sd", X, y))

    def test_errors(w):
        return np.array([np.mean(np.sign(q.X_test[:, :wi.size] @ wi) != q.y_test)
                         for wi, q in zip(w, problems, strict=True)])

    negatives = np.array([np.mean(q.y_test < 0) for q in problems])
    assert np.all(negatives > 0.2)
    for method, lr in (("gd", 0.25), ("sgd", 0.1)):
        w = fit_least_squares(X, y, method, lr, 1500, random_state=0)
        assert np.linalg.norm(w - min_norm) / np.linalg.norm(min_norm) < 1e-4
        np.testing.assert_array_equal(test_errors(w), 0.0)
    for method, lr in (("adagrad", 0.1), ("adam", 0.01)):
        w = fit_least_squares(X, y, method, lr, 1500)
        np.testing.assert_allclose(np.einsum("snd,sd->sn", X, w), y, atol=1e-4)  # fits the training set ...
        np.testing.assert_allclose(w, signs / 4, atol=1e-4)  # ... with w = sign(X^T y) / c, Lemma 3.1
        np.testing.assert_allclose(test_errors(w), negatives)  # every new point is labelled +1
    single = fit_least_squares(problems[0].X, problems[0].y, "gd", 0.25, 1500)
    assert single.shape == (problems[0].X.shape[1],)
    with pytest.raises(ValueError, match="method"):
        fit_least_squares(X, y, "lbfgs", 0.1, 10)


def test_reproduction_fast_run_save_report(tmp_path):
    result = adaptive_generalization.run(fast=True, random_state=0)
    paths = adaptive_generalization.save(result, tmp_path)
    assert [p.name for p in paths] == ["adaptive_generalization.json", "adaptive_generalization.png"]
    assert json.loads(paths[0].read_text())["agrees"] == result["agrees"]
    assert paths[1].stat().st_size > 10_000
    assert "| adagrad |" in adaptive_generalization.report(result)
    assert all(result["agrees"].values())
