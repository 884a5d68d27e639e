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


def _moment_statistics(op, probes, max_rows=1000):
    """Every statistic of a moment operator on the same probes (V, U, Q), for comparing two operators."""
    out = {"contract": op.contract(probes["V"]), "project": op.project(probes["Q"]),
           "image": op.contract_image(probes["Q"]), "row_norm_sq": op.row_norm_sq(probes["V"], max_rows=max_rows)}
    if op.order == 3:
        out["pairs"] = op.contract_pairs(probes["V"], probes["U"])
    return out


@pytest.fixture
def moment_statistics():
    return _moment_statistics
