"""Gradient descent on matrix factorizations: minimum nuclear norm as alpha -> 0, and Razin & Cohen's exception."""

import json

import numpy as np
import pytest

from nnlift.bias import min_nuclear_norm
from nnlift.bias.factorization import (
    RAZIN_COHEN_MASK,
    RAZIN_COHEN_TARGET,
    deep_factorization_completion,
    effective_rank,
    factorized_gd,
    gaussian_sensing,
    symmetric_completion,
)
from nnlift.reproduce import matrix_factorization


def test_problems_measure_a_low_rank_psd_truth():
    sensing = gaussian_sensing(7, 2, 20, random_state=0)
    completion = symmetric_completion(7, 2, 15, random_state=0)
    for problem in (sensing, completion):
        A, truth = problem.measurements, problem.truth
        np.testing.assert_allclose(A, A.transpose(0, 2, 1))
        np.testing.assert_allclose(problem.b, np.einsum("mij,ij->m", A, truth))
        eigenvalues = np.linalg.eigvalsh(truth)
        assert eigenvalues[-1] == pytest.approx(1.0) and eigenvalues[-2] > 1e-3 and abs(eigenvalues[:-2]).max() < 1e-12
    rows, cols = np.nonzero(completion.measurements.sum(axis=0))
    assert len(set(zip(np.minimum(rows, cols), np.maximum(rows, cols), strict=True))) == 15  # distinct entries
    with pytest.raises(ValueError, match="m must be"):
        symmetric_completion(3, 1, 7)


def test_completion_reaches_the_minimum_nuclear_norm_only_for_small_alpha():
    problem = symmetric_completion(10, 1, 25, random_state=0)
    reference = min_nuclear_norm(problem.measurements, problem.b, psd=True)
    assert np.linalg.norm(reference - problem.truth) < 1e-4  # enough entries for the convex program to recover it
    path = factorized_gd(problem.measurements, problem.b, [1e-1, 1e-6], 0.25 / np.linalg.norm(reference, 2), 3000)
    excess = path.nuclear_norm[-1] / np.trace(reference) - 1
    distance = np.linalg.norm(path.X - reference, axis=(1, 2)) / np.linalg.norm(reference)
    assert np.all(path.loss[-1] < 1e-5)
    assert abs(excess[1]) < 1e-3 and distance[1] < 5e-3  # alpha = 1e-6: the convex optimum
    assert excess[0] > 0.3 and distance[0] > 0.3  # alpha = 0.1: a fit of much larger nuclear norm
    np.testing.assert_allclose(path.nuclear_norm[-1], np.trace(path.X, axis1=1, axis2=2))
    assert np.all(np.diff(path.steps) > 0) and path.loss.shape == path.nuclear_norm.shape == (len(path.steps), 2)


def test_commuting_measurements_tend_to_the_minimum_trace_solution():
    """Diagonal (commuting) A_i: Gunasekar et al. prove the conjecture there, with a slow approach."""
    rng = np.random.default_rng(0)
    weights = rng.random((3, 6))
    A = np.stack([np.diag(w) for w in weights])
    b = weights @ np.array([1.0, 0.0, 0.0, 0.5, 0.0, 0.0])
    optimum = np.trace(min_nuclear_norm(A, b, psd=True))
    path = factorized_gd(A, b, [1e-1, 1e-4, 1e-8], 0.1, 20_000)
    traces = np.trace(path.X, axis1=1, axis2=2)
    assert np.all(path.loss[-1] < 1e-20)
    assert np.all(np.diff(traces) < 0) and traces[-1] < optimum * 1.02 and traces[0] > optimum * 1.1
    assert np.abs(path.X - np.stack([np.diag(np.diag(X)) for X in path.X])).max() == 0.0  # stays diagonal


def test_razin_cohen_unobserved_entry_diverges_while_the_nuclear_norm_minimiser_is_bounded():
    A = np.stack([np.eye(4)[k].reshape(2, 2) for k in (1, 2, 3)])
    reference = min_nuclear_norm(A, np.array([1.0, 1.0, 0.0]))
    assert abs(reference[0, 0]) < 1e-6 and np.linalg.norm(reference, "nuc") == pytest.approx(2.0, abs=1e-6)
    starts = np.stack([1e-3 * np.eye(2), 1e-3 * np.diag([1.0, -1.0])])
    for depth in (2, 3):
        path = deep_factorization_completion(RAZIN_COHEN_MASK, RAZIN_COHEN_TARGET, depth, starts, 0.2, 3_000,
                                             n_records=30)
        np.testing.assert_allclose(path.entries[0], starts)  # the balanced layers multiply to the start
        w11 = np.abs(path.entries[:, 0, 0, 0])
        fitted = path.loss[:, 0] < 0.05
        assert fitted[-1] and np.all(np.diff(w11[fitted]) > 0) and w11[-1] > 7  # still growing, far from 0
        assert np.all(np.diff(path.loss[fitted, 0]) < 0) and path.nuclear_norm[-1, 0] > 3.5
        assert np.all(path.det[:, 0] > -1e-12)  # det W(t) never turns negative, so no finite fit exists
        assert w11[-1] * np.sqrt(2 * path.loss[-1, 0]) == pytest.approx(1.0, abs=0.03)  # W_22 = 1 / W_11
        assert path.effective_rank[-1, 0] < 1.01  # towards rank one instead
        # the det < 0 control fits exactly, at the nuclear-norm minimiser
        assert path.loss[-1, 1] < 1e-20 and path.nuclear_norm[-1, 1] == pytest.approx(2.0, abs=1e-4)
    assert np.all(np.diff(path.time[:, 0]) > 0)


def test_effective_rank_and_validation():
    np.testing.assert_allclose(effective_rank(np.stack([np.eye(3), np.outer([1.0, 2, 3], [1.0, 0, 1])])), [3, 1])
    with pytest.raises(ValueError, match="square shape"):
        deep_factorization_completion(np.ones((2, 2)), np.ones((2, 2)), 2, np.eye(3), 0.1, 10)
    with pytest.raises(ValueError, match="positive"):
        factorized_gd(np.ones((1, 2, 2)), np.ones(1), [0.0], 0.1, 10)


@pytest.fixture(scope="module")
def fast_result():
    return matrix_factorization.run(fast=True, random_state=0)


def test_reproduction_fast_run_save_report(fast_result, tmp_path):
    result = fast_result
    paths = matrix_factorization.save(result, tmp_path)
    assert [p.name for p in paths] == ["matrix_factorization.json", "matrix_factorization.png"]
    assert json.loads(paths[0].read_text())["agrees"] == result["agrees"]
    assert paths[1].stat().st_size > 10_000
    text = matrix_factorization.report(result)
    assert "Razin" in text and "| 2 | det > 0 |" in text and "agrees" in text
    assert all(result["agrees"][f"razin-cohen L={d} {s}"] for d in (2, 3) for s in ("det > 0", "det < 0"))


def test_greedy_low_rank_finds_the_low_rank_truth_where_the_nuclear_norm_does_not(fast_result):
    """Li, Luo & Lyu (2021): on the under-sampled completion the minimum nuclear norm misses the rank-1 truth, the
    greedy low-rank solution recovers it, and GD from smaller alpha comes closer to it."""
    run = next(r for r in fast_result["factorization"] if r["problem"] == "completion" and r["m"] == 14)
    assert run["reference_truth_error"] > 0.1
    assert run["greedy"]["rank"] == 1 and run["greedy"]["truth_error"] < 1e-4
    assert fast_result["agrees"]["greedy completion m=14"] and not fast_result["agrees"]["completion m=14"]
    assert "expected: Li, Luo & Lyu 2021" in matrix_factorization.report(fast_result)


def test_greedy_verdict_fails_when_gd_moves_away_from_the_greedy_solution(fast_result):
    result = json.loads(json.dumps(fast_result))
    run = next(r for r in result["factorization"] if r["problem"] == "completion" and r["m"] == 14)
    run["greedy"]["gd_distance"] = sorted(run["greedy"]["gd_distance"])  # rising as alpha falls
    assert not matrix_factorization._verdicts(result)["greedy completion m=14"]


def test_conjecture_is_flagged_as_refuted_only_where_the_nuclear_norm_misses_the_truth(fast_result):
    runs = {f"{r['problem']} m={r['m']}": r for r in fast_result["factorization"]}
    recovered = next(r for r in runs.values() if r["reference_truth_error"] < fast_result["relative_recovery"])
    mark = matrix_factorization._conjecture_mark(False, recovered, fast_result["relative_recovery"])
    assert mark == "does not agree"
    assert "Li, Luo & Lyu" in matrix_factorization._conjecture_mark(False, runs["completion m=14"], 1e-3)
