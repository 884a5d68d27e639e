"""The moment passes on a Dask cluster equal the in-memory ones, survive a dying worker, and drive the first layer."""

import os
import signal
import threading
import time

import dask.array as da
import numpy as np
import pytest
import torch

from nnlift.datasets import make_teacher
from nnlift.distributed import DaskCrossMoment, local_client
from nnlift.lift.first_layer import estimate_first_layer
from nnlift.metrics import weight_recovery
from nnlift.moments import CrossMoment, make_moment
from nnlift.scores import GaussianScore

N, D = 3000, 5


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, D)) @ (np.eye(D) + 0.2 * rng.standard_normal((D, D))) - 0.4
    y = np.tanh(X @ rng.standard_normal(D)) + 0.1 * rng.standard_normal(N)
    probes = {"V": rng.standard_normal((D, 3)), "U": rng.standard_normal((D, 3)),
              "Q": np.linalg.qr(rng.standard_normal((D, 2)))[0]}
    return X, y, probes


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def client(request):
    with local_client(request.param, processes=False) as client:
        yield client


@pytest.mark.parametrize("order", [3, 4])
def test_cluster_equals_in_memory(data, client, order, moment_statistics):
    X, y, probes = data
    ref = CrossMoment(X, y, order=order, chunk_rows=512)
    op = DaskCrossMoment(da.from_array(X, chunks=(700, 3)), da.from_array(y, chunks=400), order=order,
                         client=client, chunk_rows=256, split_every=2)
    assert (op.n_samples, op.dim) == (N, D) and op.X.numblocks == (5, 1)
    np.testing.assert_allclose(op.score.precision_, ref.score.precision_, rtol=1e-12)
    expected = moment_statistics(ref, probes)
    for name, got in moment_statistics(op, probes).items():
        np.testing.assert_allclose(got, expected[name], rtol=0, atol=1e-10 * np.abs(expected[name]).max(),
                                   err_msg=name)
    assert op.passes == ref.passes


def test_numpy_input_and_non_finite_rows_on_a_cluster(data):
    X, y, probes = data
    with local_client(1, processes=False) as client:
        op = make_moment(X, y, client=client, chunk_rows=1000, score=GaussianScore().fit(X))
        assert isinstance(op, DaskCrossMoment) and op.X.numblocks == (3, 1)
        np.testing.assert_allclose(op.contract(probes["V"]), CrossMoment(X, y, score=op.score).contract(probes["V"]),
                                   rtol=1e-12)
        bad = X.copy()
        bad[2345, 1] = np.nan
        with pytest.raises(ValueError, match=r"X contains NaN or inf at row 2345 \(in the chunk of rows 2000-2999\)"):
            make_moment(bad, y, client=client, chunk_rows=1000)


def test_a_worker_killed_mid_pass_is_survived(data):
    """SIGKILL one of two worker processes while a contract runs: Dask recomputes its blocks and partial sums."""
    X, y, probes = data

    class SlowScore(GaussianScore):
        def contract_chunk(self, *args):
            time.sleep(0.25)
            return super().contract_chunk(*args)

    score = SlowScore().fit(X)
    expected = CrossMoment(X, y, score=score).contract(probes["V"])
    with local_client(2, processes=True) as client:
        op = make_moment(da.from_array(X, chunks=(300, D)), da.from_array(y, chunks=300), client=client, score=score)
        victim = min(client.run(os.getpid).values())
        killed_at = []
        killer = threading.Timer(0.6, lambda: (os.kill(victim, signal.SIGKILL), killed_at.append(time.time())))
        killer.start()
        got = op.contract(probes["V"])
        finished_at = time.time()
        killer.join()
        assert killed_at and killed_at[0] < finished_at
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10 * np.abs(expected).max())


def test_first_layer_from_a_cluster_equals_in_memory():
    t = make_teacher(20_000, 5, 2, "tanh", weight_scale=2.0, random_state=0)
    options = {"n_hidden": 2, "order": 3, "score": "gaussian", "random_state": 0, "chunk_rows": 4096}
    expected = estimate_first_layer(t.X, t.y, **options)
    assert weight_recovery(t.first_layer, expected.directions).min > 0.95
    X, y = da.from_array(t.X, chunks=(5000, -1)), da.from_array(t.y, chunks=5000)
    streamed = estimate_first_layer(X, y, **options)
    with local_client(2, processes=False) as client:
        clustered = estimate_first_layer(X, y, **options, client=client)
    for got in (streamed, clustered):
        np.testing.assert_allclose(got.directions, expected.directions, atol=1e-8)
        np.testing.assert_allclose(got.weights, expected.weights, rtol=1e-8)
        assert got.diagnostics["moment_passes"] == expected.diagnostics["moment_passes"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cluster_on_cuda_matches_cpu(data):
    X, y, probes = data
    expected = CrossMoment(X, y).contract(probes["V"])
    with local_client(1, processes=False) as client:
        op = make_moment(da.from_array(X, chunks=(1000, D)), da.from_array(y, chunks=1000), client=client,
                         device="cuda")
        np.testing.assert_allclose(op.contract(probes["V"]), expected, rtol=0, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("score_name", ["student_t", "mixture"])
def test_non_gaussian_scores_on_a_cluster_equal_in_memory(data, score_name, moment_statistics):
    """A score fitted on the driver survives pickling (what a process cluster does) and gives the same statistics."""
    import cloudpickle

    from nnlift.scores import get_score

    X, y, probes = data
    score = cloudpickle.loads(cloudpickle.dumps(get_score(score_name).fit(X)))
    ref = CrossMoment(X, y, order=3, score=score, chunk_rows=512)
    with local_client(2, processes=False) as client:
        op = DaskCrossMoment(da.from_array(X, chunks=(1000, D)), da.from_array(y, chunks=1000), order=3,
                             client=client, score=score)
        expected = moment_statistics(ref, probes)
        for name, got in moment_statistics(op, probes).items():
            np.testing.assert_allclose(got, expected[name], rtol=0, atol=1e-10 * np.abs(expected[name]).max(),
                                       err_msg=name)


def test_gaussian_score_is_fitted_by_map_reduce_on_the_cluster(data, monkeypatch):
    """The score's sums run as Dask reductions (no block is streamed to the client) and equal the in-memory fit."""
    from nnlift._backend import DaskSource

    X, y, _ = data
    ref = GaussianScore().fit(X)

    def no_streaming(self, chunk_rows):
        raise AssertionError("a DaskSource block was streamed to the client")

    monkeypatch.setattr(DaskSource, "_blocks", no_streaming)
    with local_client(2, processes=False) as client:
        op = DaskCrossMoment(da.from_array(X, chunks=(700, D)), da.from_array(y, chunks=700), order=3,
                             client=client)
    np.testing.assert_allclose(op.score.mean_, ref.mean_, rtol=1e-12)
    np.testing.assert_allclose(op.score.precision_, ref.precision_, rtol=1e-10)
    assert op.score.gaussianity_["kurtosis"] == pytest.approx(ref.gaussianity_["kurtosis"], rel=1e-10)
