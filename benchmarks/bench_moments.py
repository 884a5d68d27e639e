"""Cost of the implicit cross-moment E[(y - ȳ) · S3(x)] and of the whole first-layer estimate.

    python benchmarks/bench_moments.py contract            # contract_pairs / contract vs their matrix products
    python benchmarks/bench_moments.py scaling             # estimate_first_layer, n = 1e4 .. 1e7, d=100, k=10
    python benchmarks/bench_moments.py large               # estimate_first_layer, d=1000, k=50, n=1e6
    python benchmarks/bench_moments.py all --quick         # everything, small sizes (< 1 min)

Every timing is `time.perf_counter`, the median of `--repeats` runs, with a warm-up run first; the baseline
of each ratio is measured in the same process, interleaved with the library call so that load from other jobs
falls on both. Threads: `--threads` (default 1) sets OMP/MKL_NUM_THREADS before numpy/torch are imported and
`torch.set_num_threads`. Results go to benchmarks/results/moments_<part>[_quick].json.

contract: `CrossMoment.contract_pairs(U, W)` (m pairs) and `contract(V)` (m probes) on n rows, against the
matrix products the statistic cannot avoid on the same rows and chunking (chunks of a tensor converted once,
outside the timing): pairs X@U, X@W, Xᵀ@(w·XU·XW); contract X@V, Xᵀ@(w·(XV)²). The breakdown times the pass's
row conversion alone (`_chunks`: slicing + `to_tensor` copies + the mean subtraction) and the score's chunk
kernel alone on pre-converted chunks. The score is fitted directly (mean_, precision_ from one X.T@X pass) so
that building the operator at d=500 does not pay GaussianScore.fit (until 312f621 its Mardia test was a
three-operand einsum, ~99 s at n=2e5, d=500); the Mardia step is timed separately per chunk
(`score_fit_per_chunk` in the JSON). The Gaussian score streams both statistics (`GaussianScore.streamed_chunk`:
the probe-independent sums come from the construction pass and P is applied once to the pass total; up to
d = `moments.SECOND_MOMENT_MAX_DIM` that includes sum w x xᵀ and per chunk only the products by X and the
elementwise products are left, above it the mean terms cost one column sum per chunk), and the kernel column
times exactly that per-chunk work (`moments.chunk_sums`).

scaling / large: the full `estimate_first_layer` (CrossMoment + cp_symmetric defaults + row_norm_sq) on a
planted tanh teacher, X and y written chunk by chunk to .npy files under --tmp and read back with
np.load(mmap_mode="r"), each n in a fresh subprocess. Memory: VmHWM of that subprocess (/proc/self/status, the
peak resident set; it counts the touched pages of the memory-mapped data too), and the peak of RssAnon from
/proc/self/status sampled every 5 ms by a thread (anonymous memory = everything beyond the mapped data).
resource.getrusage's ru_maxrss is recorded but is NOT usable here: Linux carries the parent's high-water mark
across fork + exec, so every worker reports the peak of the parent that wrote the 8 GB file. torch allocations
are invisible to tracemalloc, so it is not used.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
GIB = 1024.0**3


def _set_threads(threads: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)


def _median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])


def _fmt_n(n: int) -> str:
    exp = len(str(n)) - 1
    return f"{n / 10**exp:g}e{exp}"


# --------------------------------------------------------------------------------------------------------------
# contract: the per-pass cost against the matrix products it needs
# --------------------------------------------------------------------------------------------------------------
def _fitted_score(X, chunk_rows):
    """A GaussianScore with mean_/precision_ set from one X.T @ X pass (no Mardia test)."""
    import numpy as np

    from nnlift.scores import GaussianScore

    n, d = X.shape
    total, second = np.zeros(d), np.zeros((d, d))
    for start in range(0, n, chunk_rows):
        chunk = np.asarray(X[start:start + chunk_rows], dtype=np.float64)
        total += chunk.sum(axis=0)
        second += chunk.T @ chunk
    mean = total / n
    cov = (second / n - np.outer(mean, mean)) * n / (n - 1)
    score = GaussianScore()
    score.mean_, score.cov_ = mean, cov
    precision = np.linalg.inv(cov)
    score.precision_ = 0.5 * (precision + precision.T)
    score.n_features_in_ = d
    score.gaussianity_ = None
    return score


def _time_contract_config(n, d, m, dtype_name, repeats, chunk_rows, rng):
    import numpy as np
    import torch

    from nnlift.moments import CrossMoment, chunk_sums, finish_sums, prepare_probes

    np_dtype = np.float64 if dtype_name == "float64" else np.float32
    X = rng.standard_normal((n, d)).astype(np_dtype)
    y = (np.tanh(X[:, : min(d, 5)].astype(np.float64) @ np.ones(min(d, 5)) / 2) + 0.05 * rng.standard_normal(n))
    score = _fitted_score(X, chunk_rows)
    moment = CrossMoment(X, y, order=3, score=score, chunk_rows=chunk_rows, device="cpu", dtype=dtype_name)
    U, W = rng.standard_normal((d, m)), rng.standard_normal((d, m))
    U /= np.linalg.norm(U, axis=0)
    W /= np.linalg.norm(W, axis=0)
    tdt = torch.float64 if dtype_name == "float64" else torch.float32
    Xt = torch.from_numpy(np.ascontiguousarray(X)).to(tdt)          # converted once, outside the timing
    wt = torch.from_numpy(y - y.mean()).to(tdt)
    Ut, Wt = torch.from_numpy(U).to(tdt), torch.from_numpy(W).to(tdt)
    chunks = [(Xt[s:s + chunk_rows], wt[s:s + chunk_rows]) for s in range(0, n, chunk_rows)]

    def base_pairs():
        acc = torch.zeros(d, m, dtype=tdt)
        for c, w in chunks:
            acc += c.T @ (w[:, None] * (c @ Ut) * (c @ Wt))
        return acc

    def base_contract():
        acc = torch.zeros(d, m, dtype=tdt)
        for c, w in chunks:
            acc += c.T @ (w[:, None] * (c @ Ut) ** 2)
        return acc

    def io_only():                      # the pass without any statistic: slicing, to_tensor copies, y - ȳ
        rows = 0
        for X_c, _w_c in moment._chunks(chunk_rows):
            rows += X_c.shape[0]
        return rows

    def kernel(statistic):
        probes = prepare_probes(score, statistic, [Ut, Wt] if statistic == "pairs" else [Ut], 3,
                                raw=moment.sums.raw)

        def run():
            total = None
            for c, w in chunks:
                part = chunk_sums(score, statistic, c, w, probes, 3, raw=moment.sums.raw)
                total = part if total is None else total + part
            return total
        return run

    calls = {
        "pairs": lambda: moment.contract_pairs(U, W),
        "pairs_base": base_pairs,
        "pairs_kernel": kernel("pairs"),
        "contract": lambda: moment.contract(U),
        "contract_base": base_contract,
        "contract_kernel": kernel("contract"),
        "io": io_only,
    }
    # guard: the kernel timed alone computes what the library returns (same chunks, same score)
    tol = 1e-8 if dtype_name == "float64" else 1e-3
    for statistic, probes in (("pairs", [U, W]), ("contract", [U])):
        lib = moment.contract_pairs(U, W) if statistic == "pairs" else moment.contract(U)
        total = calls[f"{statistic}_kernel"]().to(torch.float64).numpy()
        ker = finish_sums(score, statistic, total, probes, 3, moment.sums) / n
        if not np.allclose(lib.reshape(-1), ker, rtol=tol, atol=tol * np.abs(lib).max()):
            raise AssertionError(f"{statistic} kernel and library disagree at d={d}, m={m}, {dtype_name}")
    for fn in calls.values():          # warm-up
        fn()
    times = {name: [] for name in calls}
    for _ in range(repeats):           # interleaved, so load from other jobs falls on every variant alike
        for name, fn in calls.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    med = {name: _median(t) for name, t in times.items()}
    row = {"n": n, "d": d, "m": m, "dtype": dtype_name, "chunk_rows": chunk_rows, "repeats": repeats,
           "seconds": med, "all_seconds": times,
           "ratio_pairs": med["pairs"] / med["pairs_base"], "ratio_contract": med["contract"] / med["contract_base"],
           "gflops_base_pairs": 6.0 * n * d * m / med["pairs_base"] / 1e9}
    return row, (moment, U, W)


def _conversion_cost(d, dtype_name, chunk_rows, n_chunks=6):
    """Per-chunk row conversion: the library's to_tensor (np.array copy, fresh allocation) vs a reused buffer
    (torch copy_) vs zero-copy torch.from_numpy; X stored in float64, working dtype `dtype_name`."""
    import numpy as np
    import torch

    from nnlift._backend import to_tensor

    tdt = torch.float64 if dtype_name == "float64" else torch.float32
    X = np.random.default_rng(0).standard_normal((chunk_rows * n_chunks, d))
    buf = torch.empty((chunk_rows, d), dtype=tdt)
    variants = {"to_tensor": lambda c: to_tensor(c, torch.device("cpu"), tdt),
                "reused_buffer": lambda c: buf[:c.shape[0]].copy_(torch.from_numpy(c))}
    if dtype_name == "float64":
        variants["zero_copy"] = torch.from_numpy
    out = {}
    for name, fn in variants.items():
        samples = []
        for _ in range(3):
            started = time.perf_counter()
            for s in range(0, X.shape[0], chunk_rows):
                fn(X[s:s + chunk_rows]).sum()     # touch the result so a lazy copy would show
            samples.append((time.perf_counter() - started) / n_chunks)
        out[name] = _median(samples)
    return {"d": d, "dtype": dtype_name, "chunk_mib": chunk_rows * d * 8 / 2**20, **out}


def _bound_pairs(moment, U, W):
    return lambda: moment.contract_pairs(U, W)


def _profile_call(fn, top=12):
    """cProfile of one call: the top functions by own time, as (name, calls, tottime)."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    stats = pstats.Stats(prof)
    rows = []
    for (filename, line, name), (_cc, nc, tt, ct, _) in stats.stats.items():
        rows.append((f"{Path(filename).name}:{line}({name})" if line else name, nc, tt, ct))
    rows.sort(key=lambda r: -r[2])
    return [{"function": r[0], "calls": r[1], "tottime": r[2], "cumtime": r[3]} for r in rows[:top]]


def _torch_profile(fn, top=12):
    """torch.profiler of one call: the top aten ops by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    return [{"op": e.key, "calls": e.count, "self_ms": e.self_cpu_time_total / 1e3} for e in events[:top]]


def _score_fit_cost(d, chunk_rows, rng):
    """GaussianScore's Mardia step on one chunk: the library's `_mardia` as it is now (a GEMM since 312f621),
    the three-operand einsum("ij,jk,ik->i") it used before, and one X.T @ X for scale."""
    import numpy as np

    from nnlift.scores import GaussianScore

    X = rng.standard_normal((chunk_rows, d))
    P = np.eye(d) + 0.01 * np.ones((d, d))
    score = GaussianScore()
    score.mean_, score.precision_ = np.zeros(d), P
    out = {}
    for name, fn in {"mardia_library": lambda: score._mardia(X, chunk_rows),
                     "mardia_einsum": lambda: np.einsum("ij,jk,ik->i", X, P, X),
                     "gemm_rowwise": lambda: ((X @ P) * X).sum(axis=1),
                     "second_moment_gemm": lambda: X.T @ X}.items():
        fn()
        reps = 3 if d <= 100 else 1
        samples = []
        for _ in range(reps):
            started = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - started)
        out[name] = _median(samples)
    return out


def contract_part(args) -> dict:
    import numpy as np

    rng = np.random.default_rng(args.seed)
    rows, profiles, fit_costs = [], [], []
    for dtype_name in args.dtypes:
        for d in args.dims:
            for m in args.probes:
                row, (moment, U, W) = _time_contract_config(args.n, d, m, dtype_name, args.repeats,
                                                            args.chunk_rows, rng)
                rows.append(row)
                s = row["seconds"]
                print(f"{dtype_name} d={d} m={m}: pairs {s['pairs']:.3f} s / base {s['pairs_base']:.3f} s = "
                      f"{row['ratio_pairs']:.2f}; contract "
                      f"{s['contract']:.3f} / {s['contract_base']:.3f} = {row['ratio_contract']:.2f}; "
                      f"io {s['io']:.3f}, kernel {s['pairs_kernel']:.3f}", flush=True)
                if args.profile and (row["ratio_pairs"] > 1.3 or row["ratio_contract"] > 1.3):
                    call = _bound_pairs(moment, U, W)
                    profiles.append({"dtype": dtype_name, "d": d, "m": m, "cprofile_pairs": _profile_call(call),
                                     "torch_profile_pairs": _torch_profile(call)})
                del moment, U, W
    for d in args.dims:
        fit_costs.append({"d": d, "chunk_rows": args.chunk_rows, **_score_fit_cost(d, args.chunk_rows, rng)})
    conversions = [_conversion_cost(d, dt, args.chunk_rows) for d in args.dims for dt in args.dtypes]

    print(f"\n### contract: library vs its matrix products (n={args.n:,}, chunk_rows={args.chunk_rows}, "
          f"threads={args.threads}, median of {args.repeats})\n")
    print("| dtype | d | m | pairs (s) | 3 products (s) | ratio | contract (s) | 2 products (s) | ratio "
          "| pass I/O alone (s) | pairs kernel alone (s) | base GFLOP/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        s = r["seconds"]
        print(f"| {r['dtype']} | {r['d']} | {r['m']} | {s['pairs']:.3f} | {s['pairs_base']:.3f} | "
              f"{r['ratio_pairs']:.2f} | {s['contract']:.3f} | {s['contract_base']:.3f} | {r['ratio_contract']:.2f} | "
              f"{s['io']:.3f} | {s['pairs_kernel']:.3f} | {r['gflops_base_pairs']:.1f} |")
    print(f"\n### row conversion per chunk of {args.chunk_rows} rows, X stored as float64 (ms)\n")
    print("| d | working dtype | chunk (MiB, f64) | to_tensor (library) | copy_ into reused buffer | zero-copy |")
    print("|---|---|---|---|---|---|")
    for c in conversions:
        zc = f"{c['zero_copy'] * 1e3:.2f}" if "zero_copy" in c else "—"
        print(f"| {c['d']} | {c['dtype']} | {c['chunk_mib']:.1f} | {c['to_tensor'] * 1e3:.2f} | "
              f"{c['reused_buffer'] * 1e3:.2f} | {zc} |")
    print(f"\n### GaussianScore.fit per chunk of {args.chunk_rows} rows (float64)\n")
    print("| d | library _mardia (s) | old einsum (s) | same by GEMM (s) | X.T@X (s) | einsum / GEMM |")
    print("|---|---|---|---|---|---|")
    for f in fit_costs:
        lib = f"{f['mardia_library']:.4f}" if "mardia_library" in f else "—"
        print(f"| {f['d']} | {lib} | {f['mardia_einsum']:.4f} | {f['gemm_rowwise']:.4f} | "
              f"{f['second_moment_gemm']:.4f} | {f['mardia_einsum'] / f['gemm_rowwise']:.0f}x |")
    for p in profiles:
        print(f"\n#### profile: {p['dtype']} d={p['d']} m={p['m']} contract_pairs (cProfile, own time)\n")
        for e in p["cprofile_pairs"][:8]:
            print(f"- {e['function']}: {e['calls']} calls, {e['tottime']:.3f} s")
        print("\ntorch profiler, self CPU:")
        for e in p["torch_profile_pairs"][:8]:
            print(f"- {e['op']}: {e['calls']} calls, {e['self_ms']:.1f} ms")
    return {"rows": rows, "profiles": profiles, "score_fit_per_chunk": fit_costs, "row_conversion": conversions}


# --------------------------------------------------------------------------------------------------------------
# scaling / large: the whole first-layer estimate in a subprocess, data memory-mapped from disk
# --------------------------------------------------------------------------------------------------------------
def _write_teacher(folder: Path, n: int, d: int, k: int, seed: int, chunk_rows: int = 100_000) -> dict:
    """X (n, d) and y (n,) of a planted tanh teacher (scale 1.5), written chunk by chunk to .npy memmaps."""
    import numpy as np

    from nnlift.activations import get_activation
    from nnlift.datasets import make_teacher

    folder.mkdir(parents=True, exist_ok=True)
    params = make_teacher(1, d, k, "tanh", noise=0.05, weight_scale=1.5, random_state=seed)
    x_path, y_path, p_path = folder / f"X_{d}_{n}.npy", folder / f"y_{d}_{n}.npy", folder / f"A_{d}_{n}.npy"
    if not (x_path.exists() and y_path.exists() and p_path.exists()):
        act = get_activation("tanh")
        X = np.lib.format.open_memmap(x_path, mode="w+", dtype=np.float64, shape=(n, d))
        y = np.lib.format.open_memmap(y_path, mode="w+", dtype=np.float64, shape=(n,))
        rng = np.random.default_rng(seed + 1)
        started = time.perf_counter()
        for s in range(0, n, chunk_rows):
            rows = min(chunk_rows, n - s)
            Xc = rng.standard_normal((rows, d))
            X[s:s + rows] = Xc
            y[s:s + rows] = (act.numpy(Xc @ params.first_layer + params.bias) @ params.coef
                             + 0.05 * rng.standard_normal(rows))
        X.flush()
        y.flush()
        del X, y
        np.save(p_path, params.first_layer)
        print(f"wrote {x_path} ({n * d * 8 / GIB:.2f} GiB) in {time.perf_counter() - started:.1f} s", flush=True)
    return {"X": str(x_path), "y": str(y_path), "A": str(p_path)}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class _PeakSampler(threading.Thread):
    """Peak of RssAnon (KiB) sampled every `interval` seconds."""

    def __init__(self, interval=0.005):
        super().__init__(daemon=True)
        self.interval, self.peak, self._stop_event = interval, _status_kib("RssAnon"), threading.Event()

    def run(self):
        while not self._stop_event.is_set():
            self.peak = max(self.peak, _status_kib("RssAnon"))
            time.sleep(self.interval)

    def stop(self):
        self._stop_event.set()
        self.join()
        self.peak = max(self.peak, _status_kib("RssAnon"))
        return self.peak


def worker(args) -> None:
    """One estimate_first_layer on the first n rows of memory-mapped X, y; prints one JSON line."""
    import resource

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from nnlift.lift.first_layer import estimate_first_layer
    from nnlift.metrics import weight_recovery

    X = np.load(args.x_path, mmap_mode="r")[: args.n]
    y = np.load(args.y_path, mmap_mode="r")[: args.n]
    A = np.load(args.a_path)
    score = "gaussian"
    prefit_seconds = None
    anon_before = _status_kib("RssAnon")
    sampler = _PeakSampler()
    sampler.start()
    started = time.perf_counter()
    if args.prefit_score:
        score = _fitted_score(X, 16384)
        prefit_seconds = time.perf_counter() - started
    est = estimate_first_layer(X, y, args.k, 3, score, random_state=args.seed, device="cpu",
                               cp_options="two_pass" if args.two_pass else None)
    seconds = time.perf_counter() - started
    anon_peak = sampler.stop()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss        # KiB; inherits the parent's peak (see top)
    hwm = _status_kib("VmHWM")
    rec = weight_recovery(A, est.directions)
    print("RESULT " + json.dumps({
        "n": args.n, "d": X.shape[1], "k": args.k, "seconds": seconds, "prefit_score_seconds": prefit_seconds,
        "score": "prefit (mean_, precision_ from one X.T@X pass; no Mardia)" if args.prefit_score
        else "gaussian (GaussianScore.fit, with Mardia)",
        "two_pass": args.two_pass,
        "recovery_min": rec.min, "recovery_mean": rec.mean, "moment_passes": est.diagnostics["moment_passes"],
        "cp_passes": est.diagnostics.get("passes"), "subspace_gap": est.diagnostics.get("subspace_gap"),
        "samples_needed": est.diagnostics.get("samples_needed"),
        "data_bytes": int(X.nbytes + y.nbytes), "ru_maxrss_bytes": maxrss * 1024, "vm_hwm_bytes": hwm * 1024,
        "rss_anon_before_bytes": anon_before * 1024, "rss_anon_peak_bytes": anon_peak * 1024,
        "rss_anon_growth_bytes": (anon_peak - anon_before) * 1024, "threads": args.threads}), flush=True)


def _run_worker(paths, n, k, args, prefit=False) -> dict:
    cmd = [sys.executable, __file__, "_worker", "--x-path", paths["X"], "--y-path", paths["y"], "--a-path",
           paths["A"], "--n", str(n), "--k", str(k), "--seed", str(args.seed), "--threads", str(args.threads)]
    if prefit:
        cmd.append("--prefit-score")
    if args.two_pass:
        cmd.append("--two-pass")
    out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"worker failed (rc {out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def _memory_row(r) -> str:
    return (f"{r['data_bytes'] / GIB:.3f} | {r['vm_hwm_bytes'] / GIB:.3f} | {r['rss_anon_peak_bytes'] / GIB:.3f} "
            f"| {r['rss_anon_growth_bytes'] / GIB:.3f}")


def scaling_part(args) -> dict:
    ns = [int(float(v)) for v in args.ns]
    paths = _write_teacher(Path(args.tmp), max(ns), args.d, args.k, args.seed)
    rows = []
    for n in ns:
        reps = args.repeats if n <= args.repeat_below else 1
        runs = [_run_worker(paths, n, args.k, args) for _ in range(reps)]
        best = dict(runs[0])
        best["seconds"] = _median([r["seconds"] for r in runs])
        best["all_seconds"] = [r["seconds"] for r in runs]
        best["ru_maxrss_bytes"] = max(r["ru_maxrss_bytes"] for r in runs)
        best["vm_hwm_bytes"] = max(r["vm_hwm_bytes"] for r in runs)
        best["rss_anon_peak_bytes"] = max(r["rss_anon_peak_bytes"] for r in runs)
        best["rss_anon_growth_bytes"] = max(r["rss_anon_growth_bytes"] for r in runs)
        rows.append(best)
        print(f"n={n}: {best['seconds']:.2f} s ({reps} runs), recovery {best['recovery_min']:.4f}, maxrss "
              f"{best['vm_hwm_bytes'] / GIB:.2f} GiB (VmHWM), anon peak {best['rss_anon_peak_bytes'] / GIB:.3f} GiB",
              flush=True)
    base = rows[0]
    print(f"\n### estimate_first_layer vs n (d={args.d}, k={args.k}, tanh, scale 1.5, X memory-mapped, "
          f"threads={args.threads})\n")
    print("| n | runs | time (s) | s per 1e6 rows | passes | recovery min | data (GiB) | VmHWM (GiB) | "
          "RssAnon peak (GiB) | RssAnon growth (GiB) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {_fmt_n(r['n'])} | {len(r['all_seconds'])} | {r['seconds']:.2f} | {r['seconds'] / r['n'] * 1e6:.2f} "
              f"| {r['moment_passes']} | {r['recovery_min']:.4f} | {_memory_row(r)} |")
    if len(rows) > 1:
        import numpy as np

        big = [r for r in rows if r["n"] >= 1e5] or rows
        slope = float(np.polyfit(np.log([r["n"] for r in big]), np.log([r["seconds"] for r in big]), 1)[0])
        print(f"\nlog-log slope of time vs n over n >= 1e5: {slope:.2f} (1 = linear); time(n_max)/time(n_min) = "
              f"{rows[-1]['seconds'] / base['seconds']:.1f} for n ratio {rows[-1]['n'] / base['n']:.0f}")
    else:
        slope = None
    if not args.keep_data:
        for p in paths.values():
            Path(p).unlink(missing_ok=True)
    return {"d": args.d, "k": args.k, "rows": rows, "loglog_slope_n_ge_1e5": slope}


def large_part(args) -> dict:
    paths = _write_teacher(Path(args.tmp), args.large_n, args.large_d, args.large_k, args.seed)
    rows = []
    for prefit in ([False, True] if args.library_score else [True]):
        r = _run_worker(paths, args.large_n, args.large_k, args, prefit=prefit)
        rows.append(r)
        print(f"d={args.large_d} k={args.large_k} n={args.large_n} ({r['score']}): {r['seconds']:.1f} s, "
              f"recovery {r['recovery_min']:.4f}, anon peak {r['rss_anon_peak_bytes'] / GIB:.2f} GiB", flush=True)
    print(f"\n### estimate_first_layer at d={args.large_d}, k={args.large_k}, n={args.large_n:,} "
          f"(X memory-mapped, threads={args.threads}, 1 run)\n")
    print("| score | time (s) | of which score fit (s) | passes | recovery min / mean | data (GiB) | "
          "VmHWM (GiB) | RssAnon peak (GiB) | RssAnon growth (GiB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        fit = "—" if r["prefit_score_seconds"] is None else f"{r['prefit_score_seconds']:.1f}"
        print(f"| {r['score']} | {r['seconds']:.1f} | {fit} | {r['moment_passes']} | {r['recovery_min']:.4f} / "
              f"{r['recovery_mean']:.4f} | {_memory_row(r)} |")
    if not args.keep_data:
        for p in paths.values():
            Path(p).unlink(missing_ok=True)
    return {"rows": rows}


# --------------------------------------------------------------------------------------------------------------
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["contract", "scaling", "large", "all", "_worker"])
    parser.add_argument("--quick", action="store_true", help="small sizes, finishes in < 1 min")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunk-rows", type=int, default=16384)
    parser.add_argument("--n", type=int, default=200_000, help="rows for `contract` (worker: rows to use)")
    parser.add_argument("--dims", type=int, nargs="+", default=[20, 100, 500])
    parser.add_argument("--probes", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    parser.add_argument("--profile", action="store_true", help="cProfile + torch profiler where the ratio > 1.3")
    parser.add_argument("--ns", nargs="+", default=["1e4", "1e5", "1e6", "1e7"])
    parser.add_argument("--repeat-below", type=float, default=1e6, help="scaling: repeat only n <= this")
    parser.add_argument("--d", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--large-d", type=int, default=1000)
    parser.add_argument("--large-k", type=int, default=50)
    parser.add_argument("--large-n", type=int, default=1_000_000)
    parser.add_argument("--library-score", action="store_true",
                        help="large: also run with the library's GaussianScore.fit (X.T@X + Mardia: two n*d^2 passes)")
    parser.add_argument("--tmp", default="/tmp/nnlift_bench")
    parser.add_argument("--two-pass", action="store_true", help="scaling/large: cp_options='two_pass'")
    parser.add_argument("--keep-data", action="store_true")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/moments_<part>.json)")
    parser.add_argument("--x-path")
    parser.add_argument("--y-path")
    parser.add_argument("--a-path")
    parser.add_argument("--prefit-score", action="store_true")
    args = parser.parse_args(argv)
    _set_threads(args.threads)
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    if args.part == "_worker":
        worker(args)
        return
    if args.quick:
        args.n, args.dims, args.probes, args.repeats = 50_000, [20, 100], [10], 3
        args.ns, args.repeat_below = ["1e4", "1e5"], 1e5
        args.large_d, args.large_k, args.large_n = 200, 10, 50_000
    setting = {"threads": args.threads, "torch_num_threads": torch.get_num_threads(),
               "OMP_NUM_THREADS": os.environ["OMP_NUM_THREADS"], "numpy": np.__version__,
               "torch": torch.__version__, "cpu_count": os.cpu_count(), "load_avg_at_start": os.getloadavg(),
               "quick": args.quick, "argv": sys.argv}
    print(f"threads: torch {torch.get_num_threads()}, OMP/MKL {os.environ['OMP_NUM_THREADS']}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    result = {"setting": setting}
    parts = ["contract", "scaling", "large"] if args.part == "all" else [args.part]
    for part in parts:
        started = time.perf_counter()
        result[part] = {"contract": contract_part, "scaling": scaling_part, "large": large_part}[part](args)
        result[part]["wall_seconds"] = time.perf_counter() - started
    from nnlift._io import write_json

    suffix = "_quick" if args.quick else ""
    out = args.out or RESULTS / f"moments_{args.part}{suffix}.json"
    write_json(out, result)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
