"""Shared set-up for the tensor tests."""

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True)
def _single_blas_thread():
    """One BLAS thread: the matrices here are tiny, and on shared cores OpenBLAS threads spin-wait (~50x slower)."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield
