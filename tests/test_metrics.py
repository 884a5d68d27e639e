"""Weight recovery (Hungarian matching) against brute force and hand-made cases; excess-risk arithmetic."""

import itertools

import numpy as np
import pytest

from nnlift.metrics import excess_risk, reached_noise_floor, relative_excess_risk, weight_recovery


def test_permuted_sign_flipped_rescaled_copy_is_recovered_exactly():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((6, 4))
    perm = np.array([2, 0, 3, 1])
    B = A[:, perm] * np.array([-3.0, 0.5, -0.01, 7.0])
    result = weight_recovery(A, B)
    np.testing.assert_allclose(result.cosines, 1.0, atol=1e-12)
    np.testing.assert_array_equal(perm[result.matching], np.arange(4))
    assert result.min == pytest.approx(1.0) and result.mean == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("k_true", "k_est"), [(4, 4), (3, 5), (5, 3)])
def test_hungarian_matching_maximises_sum_of_cosines_brute_force(seed, k_true, k_est):
    rng = np.random.default_rng(seed)
    A, B = rng.standard_normal((3, k_true)), rng.standard_normal((3, k_est))
    cos = np.abs((A / np.linalg.norm(A, axis=0)).T @ (B / np.linalg.norm(B, axis=0)))
    m = min(k_true, k_est)
    best = max(
        sum(cos[r, c] for r, c in zip(rows, cols, strict=True))
        for rows in itertools.combinations(range(k_true), m)
        for cols in itertools.permutations(range(k_est), m)
    )
    result = weight_recovery(A, B)
    assert result.cosines.sum() == pytest.approx(best, rel=1e-12)
    matched = result.matching >= 0
    assert matched.sum() == m and len(set(result.matching[matched])) == m
    np.testing.assert_allclose(result.cosines[matched], cos[matched, result.matching[matched]])
    np.testing.assert_array_equal(result.cosines[~matched], 0.0)


def _unit(degrees):
    return np.array([np.cos(np.radians(degrees)), np.sin(np.radians(degrees))])


def test_hand_made_two_by_two():
    s = np.sqrt(0.5)
    # Column 0 of the estimate is e2 (for true neuron 1), column 1 is (e1 + e2)/sqrt2 at 45 degrees to e1.
    result = weight_recovery(np.eye(2), np.array([[0.0, s], [-2.0, s]]))
    np.testing.assert_allclose(result.cosines, [s, 1.0])
    np.testing.assert_array_equal(result.matching, [1, 0])
    # True neurons at 0 and 40 degrees, estimates at 25 and -60 degrees. Greedy gives neuron 0 its best
    # column (25 deg, cos 25) and leaves neuron 1 at 100 deg (sum 1.08); the optimum swaps (sum 1.47).
    result = weight_recovery(np.column_stack([_unit(0), _unit(40)]), np.column_stack([_unit(25), _unit(-60)]))
    np.testing.assert_allclose(result.cosines, [0.5, np.cos(np.radians(15))])
    np.testing.assert_array_equal(result.matching, [1, 0])
    assert result.min == pytest.approx(0.5)
    assert result.mean == pytest.approx((0.5 + np.cos(np.radians(15))) / 2)


def test_fewer_estimated_columns_leave_unmatched_neurons_at_zero():
    A = np.eye(3)
    result = weight_recovery(A, np.array([[0.0], [0.0], [-5.0]]))
    np.testing.assert_array_equal(result.cosines, [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(result.matching, [-1, -1, 0])
    assert result.min == 0.0 and result.mean == pytest.approx(1 / 3)


def test_result_is_read_only_and_inputs_untouched():
    A = np.eye(2)
    B = np.array([[2.0, 0.0], [0.0, 3.0]])
    B_copy = B.copy()
    result = weight_recovery(A, B)
    np.testing.assert_array_equal(B, B_copy)
    with pytest.raises(ValueError, match="read-only"):
        result.cosines[0] = 0.0


@pytest.mark.parametrize(("A", "B", "match"), [
    (np.eye(3), np.eye(2), "same input dimension"),
    (np.ones(3), np.eye(3), "2-D"),
    (np.array([[1.0, 0.0], [0.0, 0.0]]), np.eye(2), "zero columns"),
    (np.eye(2), np.array([[np.nan, 0.0], [0.0, 1.0]]), "finite"),
])
def test_weight_recovery_rejects_bad_shapes(A, B, match):
    with pytest.raises(ValueError, match=match):
        weight_recovery(A, B)


def test_excess_risk_arithmetic():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    pred = y + np.array([0.1, -0.1, 0.3, -0.3])  # MSE = (0.01 + 0.01 + 0.09 + 0.09) / 4 = 0.05
    assert excess_risk(y, pred, 0.04) == pytest.approx(0.01)
    assert relative_excess_risk(y, pred, 0.04) == pytest.approx(0.25)
    assert reached_noise_floor(0.05, 0.04, tol=0.26)
    assert reached_noise_floor(0.0439, 0.04)
    assert not reached_noise_floor(0.0441, 0.04)
    with pytest.raises(ValueError, match="same non-empty shape"):
        excess_risk(y, pred[:3], 0.04)
    with pytest.raises(ValueError, match="positive"):
        relative_excess_risk(y, pred, 0.0)
