"""Tests run on tiny problems, where extra intra-op threads only contend with the pytest-xdist workers
(and OpenBLAS threads spin-wait on shared cores, ~50x slower): one torch thread and one BLAS thread."""

import pytest
import torch
from threadpoolctl import threadpool_limits

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _single_blas_thread():
    with threadpool_limits(limits=1, user_api="blas"):
        yield
