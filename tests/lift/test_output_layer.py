"""The streamed ridge output layer against scikit-learn's Ridge."""

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from nnlift.lift.output_layer import fit_output_ridge_streaming, hidden_features


@pytest.mark.parametrize("alpha", [1e-3, 10.0])
def test_streamed_normal_equations_equal_sklearn_ridge(alpha):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5000, 6))
    W, b = rng.standard_normal((6, 3)), rng.standard_normal(3)
    y = rng.standard_normal(5000) + 2.0
    coef, intercept = fit_output_ridge_streaming(X, y, W, b, "tanh", alpha, chunk_rows=777)
    reference = Ridge(alpha=alpha).fit(hidden_features(X, W, b, "tanh"), y)
    np.testing.assert_allclose(coef, reference.coef_, rtol=1e-9, atol=1e-12)
    assert intercept == pytest.approx(reference.intercept_, rel=1e-9)
