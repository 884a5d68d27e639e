"""The Hessian spectrum along a training run: `nnlift.landscape.tracking.track` warm-started from the previous
checkpoint's Ritz vectors against cold starts, at equal tolerance, on the `saddles` study's digits MLP.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_track.py           # about 1.5 minutes on one core
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_track.py --quick   # smoke run, seconds

Model and data: `nnlift.reproduce.saddles.make_mlp` (tanh MLP 16-h-10, float64, h = the study's 6 unless
`--hidden`) on the study's rows of digits average-pooled to 4×4 (`load_digits_split(pool=2)`, first `--rows`),
squared error on one-hot targets, trained by full-batch gradient descent with the study's step 0.5 (its part-1
trajectory, without the weight penalty, so that the loss trained is the one whose Hessian is tracked) for
`--steps` steps, keeping `--checkpoints` evenly spaced checkpoints (the first at step 0, the last at the end).
For each `--tols` value, `track(k, which="both", index="lanczos", method=--method)` runs cold and warm on the
same checkpoints, in turn, `--repeats` times each: products per checkpoint (deterministic; in all, and those of
the top and the bottom end's Lanczos calls, all booked to the top end by the block method; the totals include
the 2k products of the residual check at each checkpoint), median wall time of each checkpoint and of the whole
run. Both use the same stopping rule (see `tracking`'s docstring),
so the residuals ‖Hv − λv‖ agree; the table shows the largest residual and the largest error of an eigenvalue
against the one of the same rank from the dense Hessian (not timed), and the index from Lanczos next to the exact
one (`critical_point_index` on the dense Hessian).
Writes benchmarks/results/track.json (settings, both runs, timings) and track.png (`plot_tracking`), or
track_block.* with `--method block`; `--quick` adds _quick to the name.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nnlift._io import write_json
from nnlift.landscape import HessianOperator, critical_point_index, flatten_params
from nnlift.landscape.tracking import plot_tracking, track
from nnlift.reproduce._common import load_digits_split, markdown_table
from nnlift.reproduce.saddles import SaddlesConfig, make_mlp

RESULTS = Path(__file__).parent / "results"


def _train(hidden: int, rows: int, steps: int, n_checkpoints: int, lr: float):
    """The model (at its start), the data, the checkpoints, their steps and the training loss at each."""
    data = load_digits_split(pool=2, random_state=0, dtype=torch.float64)
    X = data["X_train"][:rows]
    Y = F.one_hot(data["y_train"][:rows], 10).double()
    model = make_mlp(X.shape[1], hidden, 10, seed=0)
    start = flatten_params(model)
    at = set(np.linspace(0, steps, n_checkpoints).round().astype(int).tolist())
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    checkpoints, kept, losses = [], [], []
    for step in range(steps + 1):
        optimizer.zero_grad()
        loss = F.mse_loss(model(X), Y)
        if step in at:
            checkpoints.append(flatten_params(model))
            kept.append(step)
            losses.append(loss.item())
        loss.backward()
        optimizer.step()
    torch.nn.utils.vector_to_parameters(start, model.parameters())
    return model, (X, Y), checkpoints, kept, losses


def _compare(model, data, checkpoints, steps, k: int, tol: float, repeats: int, method: str) -> dict:
    """Cold and warm runs, in turn (cold first on even repeats, warm first on odd ones); the last result of each and
    the median seconds per checkpoint and in all."""
    runs = {"cold": [], "warm": []}
    for repeat in range(repeats):
        for name in ("cold", "warm") if repeat % 2 == 0 else ("warm", "cold"):
            began = time.perf_counter()
            result = track(model, F.mse_loss, data, checkpoints, k=k, tol=tol, warm_start=name == "warm",
                           steps=steps, method=method)
            runs[name].append((result, time.perf_counter() - began))
    out = {}
    for name, done in runs.items():
        result = done[-1][0]
        out[name] = {"result": result, "total_s": statistics.median(seconds for _, seconds in done),
                     "seconds": np.median([r.seconds for r, _ in done], axis=0)}
    return out


def _errors(result, exact: np.ndarray) -> float:
    """The largest distance of a returned eigenvalue from the dense one of the same rank."""
    k = result.k
    return max(np.abs(result.top - exact[:, ::-1][:, :k]).max(), np.abs(result.bottom - exact[:, :k]).max())


def _summary_rows(comparisons: dict, exact: np.ndarray) -> list[list[str]]:
    rows = []
    for tol, runs in comparisons.items():
        cold, warm = runs["cold"]["result"], runs["warm"]["result"]
        residual = {name: max(r["result"].top_residuals.max(), r["result"].bottom_residuals.max())
                    for name, r in runs.items()}
        ends = [f"{cold.end_matvec[:, end].sum()} / {warm.end_matvec[:, end].sum()}" for end in (0, 1)]
        rows.append([f"{tol:g}", str(cold.n_matvec.sum()), str(warm.n_matvec.sum()),
                     f"{warm.n_matvec.sum() / cold.n_matvec.sum():.2f}", *ends,
                     f"{runs['cold']['total_s']:.2f}", f"{runs['warm']['total_s']:.2f}",
                     f"{residual['cold']:.1e} / {residual['warm']:.1e}",
                     f"{_errors(cold, exact):.1e} / {_errors(warm, exact):.1e}"])
    return rows


def _checkpoint_rows(runs: dict, losses, dense_index) -> list[list[str]]:
    cold, warm = runs["cold"], runs["warm"]
    result = warm["result"]
    rows = []
    for i, step in enumerate(result.steps):
        index = f"{result.n_negative[i]:.0f}" + ("" if result.index_exact[i] else "+")
        rows.append([f"{step:.0f}", f"{losses[i]:.4f}", f"{result.top[i, 0]:.4f}", f"{result.bottom[i, 0]:.3e}",
                     f"{index} / {dense_index[i]}", str(cold["result"].n_matvec[i]), str(result.n_matvec[i]),
                     f"{1e3 * cold['seconds'][i]:.0f}", f"{1e3 * warm['seconds'][i]:.0f}"])
    rows.append(["all", "", "", "", "", str(cold["result"].n_matvec.sum()), str(result.n_matvec.sum()),
                 f"{1e3 * cold['total_s']:.0f}", f"{1e3 * warm['total_s']:.0f}"])
    return rows


def main() -> None:
    config = SaddlesConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=config.hidden)
    parser.add_argument("--rows", type=int, default=config.n_rows)
    parser.add_argument("--steps", type=int, default=2000, help="gradient-descent steps")
    parser.add_argument("--checkpoints", type=int, default=17)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--tols", type=float, nargs="+", default=[1e-4, 1e-8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--method", choices=["arpack", "block"], default="arpack",
                        help="track's eigensolver: ARPACK per end, or both ends by the block Krylov method")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.steps, args.checkpoints, args.k, args.tols, args.repeats = 100, 60, 4, 2, [1e-6], 1
    torch.set_num_threads(1)
    began = time.perf_counter()
    model, data, checkpoints, steps, losses = _train(args.hidden, args.rows, args.steps, args.checkpoints,
                                                     config.gd_lr)
    dense = [HessianOperator(model, F.mse_loss, data, at=theta).to_dense().numpy() for theta in checkpoints]
    exact = np.array([np.linalg.eigvalsh((H + H.T) / 2) for H in dense])
    dense_index = [critical_point_index(H).n_negative for H in dense]
    track(model, F.mse_loss, data, checkpoints[:2], k=args.k, tol=max(args.tols), method=args.method)  # warm-up
    comparisons = {tol: _compare(model, data, checkpoints, steps, args.k, tol, args.repeats, args.method)
                   for tol in args.tols}
    elapsed = time.perf_counter() - began

    n_params = checkpoints[0].numel()
    print(f"digits MLP 16-{args.hidden}-10 (P = {n_params}), {args.rows} rows, {len(checkpoints)} checkpoints of "
          f"{args.steps} GD steps, k = {args.k} at each end, {args.method}, 1 thread, median of {args.repeats}\n")
    print(markdown_table(["tol", "cold products", "warm products", "warm / cold", "top end cold / warm",
                          "bottom end cold / warm", "cold s", "warm s",
                          "max residual cold / warm", "max |λ − λ_dense| cold / warm"],
                         _summary_rows(comparisons, exact)))
    tightest = min(args.tols)
    print(f"\nPer checkpoint at tol = {tightest:g} (index: Lanczos, '+' a lower bound / dense):\n")
    print(markdown_table(["step", "loss", "λmax", "λmin", "index", "cold products", "warm products", "cold ms",
                          "warm ms"], _checkpoint_rows(comparisons[tightest], losses, dense_index)))
    print(f"\nwhole benchmark: {elapsed:.1f} s")

    name = ("track" if args.method == "arpack" else f"track_{args.method}") + ("_quick" if args.quick else "")
    best = comparisons[tightest]
    plot_tracking(best["warm"]["result"], RESULTS / f"{name}.png", baseline=best["cold"]["result"])
    write_json(RESULTS / f"{name}.json", {
        "args": vars(args), "torch": torch.__version__, "threads": torch.get_num_threads(), "n_params": n_params,
        "training_loss": losses, "dense_index": dense_index, "dense_eigenvalues": exact.tolist(), "seconds": elapsed,
        "runs": {str(tol): {run: {"total_s": runs[run]["total_s"], "median_seconds": runs[run]["seconds"].tolist(),
                                  **runs[run]["result"].to_dict()} for run in runs}
                 for tol, runs in comparisons.items()}})


if __name__ == "__main__":
    main()
