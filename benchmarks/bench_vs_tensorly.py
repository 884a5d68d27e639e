"""First-layer recovery end to end: nnlift's implicit moment vs the dense-tensor route through TensorLy.

    python benchmarks/bench_vs_tensorly.py                  # d = 20, 50, 100; k = 5, 10, 10; n = 2e5
    python benchmarks/bench_vs_tensorly.py --quick          # d = 20, 30; n = 3e4 (< 1 min)

Same data for every method: `make_teacher(n, d, k, "tanh", weight_scale=1.5, noise=0.05, random_state=seed)`.

* dense (the route a TensorLy user takes today): mean and covariance of X, Z = (X - mean) P with P = cov^-1,
  then T = mean_r w_r z_r⊗z_r⊗z_r - sym(mean_r w_r z_r ⊗ P) (w = y - ȳ), i.e. E[(y - ȳ) · S3(x)] with the same
  Gaussian score nnlift uses, as a d×d×d numpy array formed over row chunks with
  np.einsum("ni,njk->ijk", w·Z, np.einsum("nj,nk->njk", Z, Z), optimize=True) (a GEMM against the chunk's d²
  pair products, the fastest einsum route; chunk rows are capped so that intermediate stays below 256 MiB). The
  tensor is formed once per repeat and shared by the TensorLy methods; each method's time is form + its own
  decomposition. Then
  - `tensorly.decomposition.symmetric_parafac_power_iteration(T, k, n_repeat=10, n_iteration=10)` (TensorLy's
    defaults; the setting FINDINGS.md used), and
  - `tensorly.decomposition.parafac(T, k, init="svd", n_iter_max=100)` (non-symmetric CP-ALS; recovery from
    its first factor matrix).
  Time = forming the tensor + the decomposition.
* nnlift: `estimate_first_layer(X, y, k, 3, "gaussian", random_state=seed, device="cpu")` with its defaults:
  score fit (incl. the Mardia test), range finder, image T(I, Q, Q) with the projected CP and the lift,
  refinement on the operator, row_norm_sq; nnlift_two_pass: the same with cp_options="two_pass";
  nnlift_power: the same with cp_options={"method": "power", "n_restarts": 10, "n_iter": --power-iter} (the
  implicit robust power method with deflation, TensorLy's n_repeat=10, n_iteration=10 setting).
* one-call einsum: the dense tensor formed with einsum("n,ni,nj,nk->ijk", optimize=True) per chunk, timed once
  for the d in --naive-einsum (what FINDINGS.md's dense numbers used; not part of the totals).

Recovery = `weight_recovery(teacher.first_layer, estimate).min` (min |cos| after Hungarian matching). Each
timing is `time.perf_counter`, the median of `--repeats` runs (after one untimed warm-up of every method on a
small problem); the baseline (dense + TensorLy) runs in the same process, alternating with nnlift.
Threads: `--threads` (default 1) sets OMP/MKL_NUM_THREADS before numpy/torch are imported, and
torch.set_num_threads. Results: benchmarks/results/vs_tensorly[_quick].json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
GIB = 1024.0**3
MACHINE_BYTES = 24 * GIB


def _median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])


def dense_moment(X, y, max_bytes=256 * 2**20):
    """E[(y - ȳ) S3(x)] as a dense (d, d, d) array for the fitted Gaussian score, over row chunks."""
    import numpy as np

    n, d = X.shape
    chunk = max(1, min(n, int(max_bytes // (8 * d * d))))
    mean = X.mean(axis=0)
    cov = np.zeros((d, d))
    for s in range(0, n, chunk):
        C = X[s:s + chunk] - mean
        cov += C.T @ C
    cov /= n - 1
    P = np.linalg.inv(cov)
    P = 0.5 * (P + P.T)
    w_all = y - y.mean()
    T = np.zeros((d, d, d))
    m1 = np.zeros(d)
    for s in range(0, n, chunk):
        Z = (X[s:s + chunk] - mean) @ P
        w = w_all[s:s + chunk]
        # two einsums: the pair products, then a contraction over rows that einsum hands to BLAS (tensordot);
        # the one-call einsum("n,ni,nj,nk->ijk", ..., optimize=True) runs its last step in einsum's own loop,
        # 3.5x slower at d=100 (measured), and optimize=False slower still
        T += np.einsum("ni,njk->ijk", w[:, None] * Z, np.einsum("nj,nk->njk", Z, Z), optimize=True)
        m1 += Z.T @ w
    T /= n
    m1 /= n
    T -= (np.einsum("i,jk->ijk", m1, P) + np.einsum("j,ik->ijk", m1, P) + np.einsum("k,ij->ijk", m1, P))
    return T, chunk


def run_dense(teacher, k, methods, seed):
    """Form the dense tensor once, then each TensorLy decomposition; per method: form + decompose seconds."""
    import numpy as np
    import tensorly as tl
    from tensorly.decomposition import parafac, symmetric_parafac_power_iteration

    from nnlift.metrics import weight_recovery

    tl.set_backend("numpy")
    started = time.perf_counter()
    T, chunk = dense_moment(teacher.X, teacher.y)
    formed = time.perf_counter() - started
    out = {}
    for method in methods:
        started = time.perf_counter()
        np.random.seed(seed)  # noqa: NPY002  TensorLy's power iteration draws from the global RNG
        if method == "tl_power":
            _, factor = symmetric_parafac_power_iteration(T, k, n_repeat=10, n_iteration=10)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cp = parafac(T, k, init="svd", n_iter_max=100, random_state=seed)
            factor = cp.factors[0]
        decompose = time.perf_counter() - started
        out[method] = {"seconds": formed + decompose, "form_seconds": formed, "decompose_seconds": decompose,
                       "chunk_rows": chunk, "recovery_min": weight_recovery(teacher.first_layer, factor).min}
    return out


def naive_einsum_form(teacher, max_bytes=256 * 2**20):
    """Seconds to form the same tensor with the one-call einsum("n,ni,nj,nk->ijk", optimize=True) per chunk."""
    import numpy as np

    X, y = teacher.X, teacher.y
    n, d = X.shape
    chunk = max(1, min(n, int(max_bytes // (8 * d * d))))
    started = time.perf_counter()
    mean = X.mean(axis=0)
    P = np.linalg.inv(np.cov(X, rowvar=False))
    w_all = y - y.mean()
    T = np.zeros((d, d, d))
    for s in range(0, n, chunk):
        Z = (X[s:s + chunk] - mean) @ P
        T += np.einsum("n,ni,nj,nk->ijk", w_all[s:s + chunk], Z, Z, Z, optimize=True)
    return time.perf_counter() - started


def run_nnlift(teacher, k, seed, cp_options=None):
    from nnlift.lift.first_layer import estimate_first_layer
    from nnlift.metrics import weight_recovery

    started = time.perf_counter()
    est = estimate_first_layer(teacher.X, teacher.y, k, 3, "gaussian", random_state=seed, device="cpu",
                               cp_options=cp_options)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "recovery_min": weight_recovery(teacher.first_layer, est.directions).min,
            "moment_passes": est.diagnostics["moment_passes"], "subspace_gap": est.diagnostics.get("subspace_gap")}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="d = 20, 30 on 3e4 rows, 1 repeat (< 1 min)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dims", type=int, nargs="+", default=[20, 50, 100])
    parser.add_argument("--ks", type=int, nargs="+", default=[5, 10, 10])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--weight-scale", type=float, default=1.5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=["tl_power", "tl_parafac"], choices=["tl_power", "tl_parafac"])
    parser.add_argument("--power", action=argparse.BooleanOptionalAction, default=True,
                        help="also nnlift with cp_options method='power' (10 restarts x --power-iter iterations)")
    parser.add_argument("--power-iter", type=int, default=10)
    parser.add_argument("--two-pass", action=argparse.BooleanOptionalAction, default=True,
                        help="also nnlift with cp_options='two_pass' (one sketch pass, one image pass)")
    parser.add_argument("--naive-einsum", type=int, nargs="*", default=[50, 100],
                        help="d values at which to also time (once) the one-call einsum tensor formation")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np
    import tensorly
    import torch

    torch.set_num_threads(args.threads)
    from nnlift._io import write_json
    from nnlift.datasets import make_teacher

    if args.quick:
        args.dims, args.ks, args.n, args.repeats, args.naive_einsum = [20, 30], [5, 5], 30_000, 1, [30]
    if len(args.ks) != len(args.dims):
        parser.error("--ks needs one k per --dims entry")
    print(f"threads: torch {torch.get_num_threads()}, OMP/MKL {os.environ['OMP_NUM_THREADS']}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; tensorly {tensorly.__version__}", flush=True)
    # warm-up (imports, MKL/torch initialisation) on a small problem, untimed
    warm = make_teacher(20_000, 10, 3, "tanh", weight_scale=args.weight_scale, random_state=0)
    run_nnlift(warm, 3, 0)
    run_dense(warm, 3, args.methods, 0)

    rows = []
    for d, k in zip(args.dims, args.ks, strict=True):
        teacher = make_teacher(args.n, d, k, "tanh", noise=0.05, weight_scale=args.weight_scale,
                               random_state=args.seed)
        extra = [*(["nnlift_two_pass"] if args.two_pass else []), *(["nnlift_power"] if args.power else [])]
        runs = {name: [] for name in ["nnlift", *extra, *args.methods]}
        for _ in range(args.repeats):                 # alternate, so load from other jobs falls on every method
            runs["nnlift"].append(run_nnlift(teacher, k, args.seed))
            if args.two_pass:
                runs["nnlift_two_pass"].append(run_nnlift(teacher, k, args.seed, "two_pass"))
            if args.power:
                runs["nnlift_power"].append(run_nnlift(teacher, k, args.seed, {"method": "power", "n_restarts": 10,
                                                                               "n_iter": args.power_iter}))
            for method, r in run_dense(teacher, k, args.methods, args.seed).items():
                runs[method].append(r)
        summary = {}
        for name, rs in runs.items():
            summary[name] = {key: _median([r[key] for r in rs]) for key in rs[0]
                             if isinstance(rs[0][key], int | float) and rs[0][key] is not None}
            summary[name]["all_seconds"] = [r["seconds"] for r in rs]
            summary[name]["all_recovery_min"] = [r["recovery_min"] for r in rs]
        naive = naive_einsum_form(teacher) if d in args.naive_einsum else None
        row = {"d": d, "k": k, "n": args.n, "methods": summary, "naive_einsum_form_seconds": naive,
               "speedup_vs_tl_power": (summary["tl_power"]["seconds"] / summary["nnlift"]["seconds"]
                                       if "tl_power" in summary else None)}
        rows.append(row)
        print(f"d={d} k={k}: " + "; ".join(f"{name} {s['seconds']:.2f} s rec {s['recovery_min']:.4f}"
                                            for name, s in summary.items()), flush=True)

    print(f"\n### first-layer recovery: nnlift vs dense E[y·S3] + TensorLy (tanh, scale {args.weight_scale}, "
          f"n={args.n:,}, seed {args.seed}, threads={args.threads}, median of {args.repeats})\n")
    names = ["nnlift", *(["nnlift_two_pass"] if args.two_pass else []), *(["nnlift_power"] if args.power else []),
             *args.methods]
    head = " | ".join(f"{name} time (s) | {name} recovery" for name in names)
    print(f"| d | k | {head} | dense: form (s) | one-call einsum form (s, 1 run) | speed-up vs tl_power |")
    print("|---|---|" + "---|---|" * len(names) + "---|---|---|")
    for r in rows:
        m = r["methods"]
        cells = " | ".join(f"{m[name]['seconds']:.2f} | {m[name]['recovery_min']:.4f}" for name in names)
        form = m[args.methods[0]]["form_seconds"] if args.methods else float("nan")
        naive = "—" if r["naive_einsum_form_seconds"] is None else f"{r['naive_einsum_form_seconds']:.1f}"
        speed = "—" if r["speedup_vs_tl_power"] is None else f"{r['speedup_vs_tl_power']:.1f}x"
        print(f"| {r['d']} | {r['k']} | {cells} | {form:.2f} | {naive} | {speed} |")
    print("\nnnlift diagnostics (first run): " + "; ".join(
        f"d={r['d']}: passes {r['methods']['nnlift'].get('moment_passes')}, subspace gap "
        f"{r['methods']['nnlift'].get('subspace_gap')}" for r in rows))

    # where the dense route stops: memory d^3 * 8 bytes and work ~ 2 n d^3 (every row touches all d^3 entries)
    last = rows[-1]
    form_rate = last["methods"][args.methods[0]]["form_seconds"] / (last["n"] * last["d"] ** 3)
    d_fit = int((MACHINE_BYTES / 8) ** (1 / 3))
    limits = []
    print(f"\n### dense route limits (tensor alone d³·8 bytes vs {MACHINE_BYTES / GIB:.0f} GiB; forming time "
          f"extrapolated as n·d³ from d={last['d']}, n={last['n']:,})\n")
    print("| d | tensor (GiB) | fits in 24 GiB | forming time at n=2e5 | at n=1e6 |")
    print("|---|---|---|---|---|")
    for d in sorted({100, 200, 500, 1000, d_fit, 2000}):
        size = d**3 * 8
        t2, t6 = form_rate * 2e5 * d**3, form_rate * 1e6 * d**3
        limits.append({"d": d, "tensor_bytes": size, "fits": size < MACHINE_BYTES, "form_seconds_n2e5": t2,
                       "form_seconds_n1e6": t6})
        print(f"| {d} | {size / GIB:.3g} | {'yes' if size < MACHINE_BYTES else 'no'} | {t2 / 3600:.3g} h | "
              f"{t6 / 3600:.3g} h |")
    print(f"\nd³·8 bytes = 24 GiB at d ≈ {d_fit}; TensorLy's deflation and parafac's unfoldings hold further "
          "d³ copies, so in practice the limit is lower.")
    result = {"setting": {"threads": args.threads, "torch_num_threads": torch.get_num_threads(),
                          "numpy": np.__version__, "tensorly": tensorly.__version__, "torch": torch.__version__,
                          "load_avg_at_start": os.getloadavg(), "argv": sys.argv, "n": args.n,
                          "weight_scale": args.weight_scale, "seed": args.seed, "repeats": args.repeats},
              "rows": rows, "dense_limits": limits, "form_seconds_per_n_d3": form_rate}
    out = args.out or RESULTS / f"vs_tensorly{'_quick' if args.quick else ''}.json"
    write_json(out, result)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
