"""Pooling components across moment orders."""

import numpy as np
import pytest

from nnlift.lift.first_layer import FirstLayerEstimate, merge_components


def _estimate(directions, weights, stderr, order):
    k = len(weights)
    return FirstLayerEstimate(np.asarray(directions, float), np.asarray(weights, float), {
        "order": order, "moment_passes": 5, "subspace_gap": 2.0 + order, "residual": 0.1 * order,
        "component_stderr": list(stderr), "component_orders": [order] * k,
        "component_samples_needed": [100 * order] * k, "gaussianity": None,
        "score": {"family": "GaussianScore"}})


def test_merge_keeps_the_best_measured_distinct_components():
    e = np.eye(3)
    third = _estimate(np.column_stack([e[0], e[1], (e[0] + e[2]) / np.sqrt(2)]), [1.0, 0.5, 0.01], [0.1] * 3, 3)
    fourth = _estimate(np.column_stack([-e[1], e[2], e[0]]), [2.0, 0.8, 0.2], [0.1] * 3, 4)
    merged = merge_components([third, fourth], 3)
    # SNRs: e1 from order 4 (20) beats e1 from order 3 (5), e0 (10) beats the order-4 duplicate (2); e2 (8).
    np.testing.assert_array_equal(np.abs(merged.directions), np.column_stack([e[1], e[0], e[2]]))
    assert merged.diagnostics["component_orders"] == [4, 3, 4]
    assert merged.diagnostics["order"] == [3, 4]
    assert merged.diagnostics["moment_passes"] == 10
    assert merged.diagnostics["subspace_gap"] == 6.0 and merged.diagnostics["residual"] == pytest.approx(0.3)
    assert merged.diagnostics["samples_needed"] == 400


def test_merge_fills_up_with_duplicates_when_too_few_are_distinct():
    e = np.eye(2)
    a = _estimate(np.column_stack([e[0], e[0]]), [1.0, 0.9], [0.1, 0.1], 3)
    merged = merge_components([a], 2)
    assert merged.directions.shape == (2, 2)


def test_a_zero_weight_component_needs_infinitely_many_rows():
    from nnlift.lift.first_layer import required_samples

    needed = required_samples(np.array([4.0, 0.0, 1.0]), np.array([2.0, 0.0, 0.0]))
    assert needed[0] == 100 and np.isinf(needed[1]) and np.isinf(needed[2])
