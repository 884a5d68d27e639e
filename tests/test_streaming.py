"""Row sources (memmap, torch, Dask, re-iterable chunk functions) give the numpy path's moments; faults are named."""

import dask.array as da
import numpy as np
import pytest
import torch

from nnlift._backend import ArraySource, ChunkSource, iter_row_chunks
from nnlift.moments import CrossMoment, make_moment
from nnlift.scores import GaussianScore

N, D = 1500, 5
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, D)) @ (np.eye(D) + 0.2 * rng.standard_normal((D, D))) + 0.3
    y = np.tanh(X @ rng.standard_normal(D)) + 0.1 * rng.standard_normal(N)
    probes = {"V": rng.standard_normal((D, 3)), "U": rng.standard_normal((D, 3)),
              "Q": np.linalg.qr(rng.standard_normal((D, 2)))[0]}
    return X, y, probes


def _pieces(X, y, sizes=(1, 333, 700, 64)):
    """A function returning a fresh iterator of uneven (X_chunk, y_chunk) pairs over all rows."""
    def make():
        start, i = 0, 0
        while start < len(X):
            stop = start + sizes[i % len(sizes)]
            yield X[start:stop], y[start:stop]
            start, i = stop, i + 1
    return make


def _assert_same(got, expected, rtol):
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=0, atol=rtol * np.abs(value).max(), err_msg=name)


SOURCES = {
    "memmap": lambda X, y, tmp: (np.load(_saved(tmp / "X.npy", X), mmap_mode="r"),
                                 np.load(_saved(tmp / "y.npy", y), mmap_mode="r")),
    "torch": lambda X, y, tmp: (torch.from_numpy(X), torch.from_numpy(y)),
    "dask": lambda X, y, tmp: (da.from_array(X, chunks=(400, 2)), da.from_array(y, chunks=250)),
    "function": lambda X, y, tmp: (_pieces(X, y), None),
    "chunk_source": lambda X, y, tmp: (ChunkSource(_pieces(X, y)), None),
}


def _saved(path, a):
    np.save(path, a)
    return path


@pytest.mark.parametrize("order", [3, 4])
@pytest.mark.parametrize("kind", SOURCES)
def test_every_source_gives_the_numpy_moments(data, tmp_path, kind, order, moment_statistics):
    X, y, probes = data
    ref = CrossMoment(X, y, order=order, chunk_rows=256)
    source_X, source_y = SOURCES[kind](X, y, tmp_path)
    op = CrossMoment(source_X, source_y, order=order, chunk_rows=256)
    assert (op.n_samples, op.dim) == (N, D)
    np.testing.assert_allclose(op.y_mean, ref.y_mean, rtol=1e-13)
    np.testing.assert_allclose(op.score.cov_, ref.score.cov_, rtol=1e-12)
    np.testing.assert_allclose(op.score.gaussianity_["kurtosis"], ref.score.gaussianity_["kurtosis"], rtol=1e-12)
    _assert_same(moment_statistics(op, probes, max_rows=500), moment_statistics(ref, probes, max_rows=500), 1e-12)
    assert op.passes == ref.passes == (4 if order == 3 else 3)


def test_per_chunk_work_is_bounded_by_chunk_rows(data):
    X, y, probes = data
    seen = []

    class Recording(GaussianScore):
        def streamed_chunk(self, statistic, X_t, *args, **kwargs):
            seen.append(X_t.shape[0])
            return super().streamed_chunk(statistic, X_t, *args, **kwargs)

    score = Recording().fit(X)
    for source in [(_pieces(X, y, sizes=(1000, 500)), None), (da.from_array(X, chunks=(900, D)), y)]:
        seen.clear()
        CrossMoment(*source, score=score, chunk_rows=128).contract(probes["V"])
        assert max(seen) == 128 and sum(seen) == N


def test_score_fits_on_a_chunk_function_and_counts_its_rows(data):
    X, y, _ = data
    source = ChunkSource(_pieces(X, y))
    assert source.n_rows is None
    assert source.shape == (N, D)
    np.testing.assert_allclose(GaussianScore().fit(source, chunk_rows=100).cov_, GaussianScore().fit(X).cov_,
                               rtol=1e-12)
    starts = [start for start, _, _ in iter_row_chunks(source, None, 100)]
    assert starts[:3] == [0, 1, 101] and starts[-1] < N


def test_row_norm_sq_reads_only_the_first_rows(data):
    X, y, probes = data
    rows_read = []

    def make():
        for start in range(0, N, 100):
            rows_read.append(start)
            yield X[start:start + 100], y[start:start + 100]

    score = GaussianScore().fit(X)
    op = CrossMoment(make, score=score, chunk_rows=64)
    rows_read.clear()
    got = op.row_norm_sq(probes["V"], max_rows=250)
    assert rows_read == [0, 100, 200] and op.passes == 0
    np.testing.assert_allclose(got, CrossMoment(X, y, score=score).row_norm_sq(probes["V"], max_rows=250),
                               rtol=1e-12)


class _Flaky:
    """A chunk function whose later passes can end early, run long, raise, or change width."""

    def __init__(self, X, y, fault=None):
        self.X, self.y, self.fault, self.calls = X, y, fault, 0

    def __call__(self):
        self.calls += 1
        broken = self.calls > 1 and self.fault is not None
        for start in range(0, N, 300):
            X, y = self.X[start:start + 300], self.y[start:start + 300]
            if broken and start == 900:
                if self.fault == "short":
                    return
                if self.fault == "raise":
                    raise OSError("disk read failed")
                if self.fault == "wide":
                    X = np.column_stack([X, X[:, 0]])
            yield X, y
        if broken and self.fault == "long":
            yield self.X[:10], self.y[:10]


@pytest.mark.parametrize(("fault", "error", "message"), [
    ("short", RuntimeError, "ended after 900 rows but has 1500"),
    ("long", RuntimeError, "more than the 1500 rows"),
    ("raise", RuntimeError, r"failed after 900 rows \(OSError: disk read failed\)"),
    ("wide", ValueError, "chunk at row 900 has 6 columns but earlier chunks have 5"),
])
def test_a_pass_that_goes_wrong_raises_and_leaves_no_partial_result(data, fault, error, message):
    X, y, probes = data
    flaky = _Flaky(X, y, fault)
    op = CrossMoment(flaky, score=GaussianScore().fit(X))
    with pytest.raises(error, match=message):
        op.contract(probes["V"])
    assert op.passes == 0
    flaky.fault = None
    np.testing.assert_allclose(op.contract(probes["V"]), CrossMoment(X, y, score=op.score).contract(probes["V"]),
                               rtol=1e-12)
    assert op.passes == 1


def test_non_finite_rows_are_named_with_their_chunk(data):
    X, y, _ = data
    bad = X.copy()
    bad[713, 2] = np.inf
    with pytest.raises(ValueError, match=r"X contains NaN or inf at row 713 \(in the chunk of rows 334-1033\)"):
        CrossMoment(_pieces(bad, y), score=GaussianScore().fit(X))
    bad_y = y.copy()
    bad_y[1400] = np.nan
    with pytest.raises(ValueError, match="y contains NaN or inf at row 1400"):
        CrossMoment(da.from_array(X, chunks=(500, D)), da.from_array(bad_y, chunks=500), chunk_rows=128)


@pytest.mark.parametrize(("source", "y", "error", "message"), [
    (lambda X, y: iter([(X, y)]), None, TypeError, "one-shot iterator"),
    (lambda X, y: lambda: iter([X, y]), None, TypeError, r"\(X_chunk, y_chunk\) pairs"),
    (lambda X, y: lambda: iter([(X, y[:-1])]), None, ValueError, r"y chunk at row 0 has shape \(1499,\)"),
    (lambda X, y: lambda: iter([(X[:, 0], y)]), None, ValueError, "chunks of X must be 2-D"),
    (lambda X, y: lambda: iter([(X, None)]), None, ValueError, "y is required"),
    (lambda X, y: lambda: iter([]), None, ValueError, "yielded no rows"),
    (lambda X, y: ChunkSource(lambda: iter([(X, y)])), np.ones(N), ValueError, "y must be None"),
    (lambda X, y: da.from_array(X)[da.from_array(y) > 0], None, ValueError, "unknown chunk sizes"),
    (lambda X, y: X, np.ones(N - 1), ValueError, "1-D with 1500"),
    (lambda X, y: X[:, 0], np.ones(N), ValueError, "X must be 2-D"),
])
def test_malformed_sources_are_refused(data, source, y, error, message):
    X, y_data, _ = data
    with pytest.raises(error, match=message):
        CrossMoment(source(X, y_data), y, score=GaussianScore().fit(X))


@pytest.mark.parametrize("failure", [
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to "
                 "allocate 80000000000 bytes"),
    MemoryError(),
])
def test_running_out_of_memory_suggests_a_smaller_chunk_rows(data, failure):
    X, y, probes = data

    class Hungry(GaussianScore):
        def project_chunk(self, *args):
            raise failure

    op = CrossMoment(X, y, score=Hungry().fit(X), chunk_rows=1024)
    with pytest.raises(MemoryError, match=r"chunks of 1024 rows; pass a smaller chunk_rows \(e.g. chunk_rows=128\)"):
        op.project(probes["Q"])
    assert op.passes == 0


def test_other_errors_are_not_mistaken_for_memory(data):
    X, y, probes = data

    class Broken(GaussianScore):
        def streamed_chunk(self, *args, **kwargs):
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        CrossMoment(X, y, score=Broken().fit(X)).contract(probes["V"])


def test_make_moment_without_a_client_is_a_cross_moment(data):
    X, y, probes = data
    op = make_moment(X, y, order=3, chunk_rows=500)
    assert type(op) is CrossMoment and isinstance(op.source, ArraySource)
    np.testing.assert_array_equal(op.contract(probes["V"]), CrossMoment(X, y, chunk_rows=500).contract(probes["V"]))


@cuda
@pytest.mark.parametrize("kind", ["numpy", "memmap", "cuda_tensor", "function"])
def test_cuda_matches_cpu_in_float32(data, tmp_path, kind, moment_statistics):
    X, y, probes = data
    ref = moment_statistics(CrossMoment(X, y, order=3, chunk_rows=256), probes, max_rows=500)
    if kind == "memmap":
        source = SOURCES["memmap"](X, y, tmp_path)
    elif kind == "cuda_tensor":
        source = (torch.from_numpy(X).cuda(), torch.from_numpy(y).cuda())
    elif kind == "function":
        source = (_pieces(torch.from_numpy(X).cuda(), torch.from_numpy(y).cuda()), None)
    else:
        source = (X, y)
    op = CrossMoment(*source, order=3, chunk_rows=256, device="cuda")
    assert op.dtype == torch.float32 and op.device.type == "cuda"
    _assert_same(moment_statistics(op, probes, max_rows=500), ref, 1e-4)


def test_gaussian_score_fits_from_the_construction_pass(data, monkeypatch):
    """For d <= SECOND_MOMENT_MAX_DIM the moment's construction pass already holds sum x and sum x x^T, so the
    Gaussian score's mean/covariance pass is skipped; the fit is the same."""
    import nnlift.scores.gaussian as gaussian

    X, y, _ = data
    reference = GaussianScore().fit(X)
    monkeypatch.setattr(gaussian, "_column_sums", lambda *args: pytest.fail("the column sums were read again"))
    op = CrossMoment(X, y, order=3, chunk_rows=256)
    np.testing.assert_allclose(op.score.mean_, reference.mean_, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(op.score.cov_, reference.cov_, rtol=1e-12)
    assert op.score.gaussianity_["kurtosis"] == pytest.approx(reference.gaussianity_["kurtosis"], rel=1e-12)
