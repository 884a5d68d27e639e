"""Recovery of planted first layers by NN-LIFT, and NN-LIFT vs random-init backprop on the same budget.

    python benchmarks/bench_recovery.py recovery --activation tanh --d 20 --k 5 --n 500000 --seeds 20
    python benchmarks/bench_recovery.py curve --activation tanh --d 20 --k 5 --seeds 3
    python benchmarks/bench_recovery.py versus --activation relu --d 10 --k 5 --n 500000 --seeds 20
    python benchmarks/bench_recovery.py passes --activation tanh --d 50 --k 10 --n 1000000 --seeds 1

Each prints a markdown table and writes the per-seed numbers to benchmarks/results/<name>.json.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

from nnlift import LiftRegressor
from nnlift._io import atomic_write, write_json
from nnlift._training import predict_two_layer
from nnlift.baselines import BackpropRegressor
from nnlift.datasets import make_teacher
from nnlift.lift import NNLiftWarning
from nnlift.metrics import reached_noise_floor, weight_recovery

RESULTS = Path(__file__).parent / "results"


def _fit(model, teacher) -> dict:
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NNLiftWarning)
        model.fit(teacher.X, teacher.y)
    seconds = time.perf_counter() - started
    mse = float(np.mean((model.predict(teacher.X_test) - teacher.y_test) ** 2))
    row = {"seconds": seconds, "test_mse": mse, "relative_excess": mse / teacher.noise_var - 1,
           "success": bool(reached_noise_floor(mse, teacher.noise_var, 0.1)),
           "recovery_min": float(weight_recovery(teacher.first_layer, model.first_layer_).min)}
    if hasattr(model, "initial_params_"):
        row["start_recovery_min"] = float(weight_recovery(teacher.first_layer, model.initial_params_.first_layer).min)
        start = predict_two_layer(model.initial_params_, teacher.X_test, model.activation)
        row["start_mse_over_noise"] = float(np.mean((start - teacher.y_test) ** 2) / teacher.noise_var)
        row["warnings"] = model.diagnostics_["warnings"]
    return row


def _teacher(args, seed, n=None):
    return make_teacher(n or args.n, args.d, args.k, args.activation, noise=args.noise,
                        weight_scale=args.weight_scale, random_state=seed, n_test=20_000)


def _budget(args, seed) -> dict:
    return {"max_iter": args.max_iter, "max_rows": args.max_rows, "random_state": seed}


def recovery(args) -> dict:
    rows = []
    for seed in range(args.seeds):
        teacher = _teacher(args, seed)
        rows.append(_fit(LiftRegressor(args.k, activation=args.activation, **_budget(args, seed)), teacher))
        print(f"seed {seed}: start {rows[-1]['start_recovery_min']:.4f} (MSE {rows[-1]['start_mse_over_noise']:.2f} "
              f"noise) -> tuned {rows[-1]['recovery_min']:.4f}, "
              f"excess/noise {rows[-1]['relative_excess']:.3g}, {rows[-1]['seconds']:.1f} s", flush=True)
    tuned = np.array([r["recovery_min"] for r in rows])
    start = np.array([r["start_recovery_min"] for r in rows])
    print(f"| {args.activation} | {args.d} | {args.k} | {args.weight_scale} | {args.n:.0e} | "
          f"{np.median(start):.3f} ({start.min():.3f}–{start.max():.3f}) | {np.median(tuned):.4f} "
          f"({tuned.min():.4f}) | {(tuned >= 0.99).sum()}/{len(rows)} | "
          f"{np.median([r['seconds'] for r in rows]):.1f} |")
    return {"rows": rows}


def curve(args) -> dict:
    table = {}
    for n in [10_000, 30_000, 100_000, 300_000, 1_000_000]:
        values = []
        for seed in range(args.seeds):
            teacher = _teacher(args, seed, n)
            model = LiftRegressor(args.k, activation=args.activation, finetune=False, random_state=seed)
            values.append(_fit(model, teacher)["recovery_min"])
        table[n] = values
        print(f"| {n:.0e} | {np.median(values):.3f} | {min(values):.3f}–{max(values):.3f} |", flush=True)
    _plot_curve(table, args)
    return {"recovery_min_by_n": table}


def _plot_curve(table: dict, args) -> None:
    """recovery_curve_<activation>_d<d>_k<k>.png: 1 - min recovery vs n (log-log), per seed and median."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = np.array(sorted(table))
    errors = np.array([[1 - v for v in table[n]] for n in ns])
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.loglog(np.repeat(ns, errors.shape[1]), errors.ravel(), "o", alpha=0.4, label="seeds")
    ax.loglog(ns, np.median(errors, axis=1), "-", label="median")
    ax.set(xlabel="rows n", ylabel="1 - min |cos| (no fine-tuning)",
           title=f"{args.activation}, d={args.d}, k={args.k}, scale {args.weight_scale}")
    ax.legend()
    fig.tight_layout()
    path = RESULTS / f"recovery_curve_{args.activation}_d{args.d}_k{args.k}.png"
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def versus(args) -> dict:
    rows = []
    for seed in range(args.seeds):
        teacher = _teacher(args, seed)
        lift = _fit(LiftRegressor(args.k, activation=args.activation, **_budget(args, seed)), teacher)
        back = _fit(BackpropRegressor(args.k, activation=args.activation, alpha=0.0, **_budget(args, seed)),
                    teacher)
        rows.append({"seed": seed, "nnlift": lift, "backprop": back})
        print(f"seed {seed}: nnlift excess {lift['relative_excess']:.3g} rec {lift['recovery_min']:.3f} "
              f"({lift['seconds']:.1f} s) | backprop excess {back['relative_excess']:.3g} "
              f"rec {back['recovery_min']:.3f} ({back['seconds']:.1f} s)", flush=True)
    for method in ("nnlift", "backprop"):
        results = [r[method] for r in rows]
        wins = [r for r in results if r["success"]]
        print(f"| {method} | {len(wins)}/{len(results)} | {np.median([r['relative_excess'] for r in results]):.3g} | "
              f"{np.median([r['recovery_min'] for r in results]):.3f} | "
              f"{np.median([r['seconds'] for r in wins]) if wins else float('nan'):.1f} |")
    return {"rows": rows}


def passes(args) -> dict:
    """Passes over the data vs recovery of the tensor start (no fine-tuning) for three cp_symmetric settings."""
    settings = {"default": None, "two passes": "two_pass",
                "four passes": {"subspace_iter": 3, "refine_iter": 0, "fallback": False}}
    teacher = _teacher(args, args.seeds)
    rows = {}
    for name, options in settings.items():
        model = LiftRegressor(args.k, activation=args.activation, finetune=False, random_state=0,
                              cp_options=options)
        row = _fit(model, teacher)
        row["passes"] = model.diagnostics_["moment_passes"]
        rows[name] = row
        print(f"| {name} | {row['passes']} | {row['recovery_min']:.4f} | {row['seconds']:.1f} |", flush=True)
    return {"settings": settings, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", choices=["recovery", "curve", "versus", "passes"])
    parser.add_argument("--activation", default="tanh")
    parser.add_argument("--d", type=int, default=20)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--n", type=int, default=500_000)
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--weight-scale", type=float, default=1.5)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--max-iter", type=int, default=200)
    parser.add_argument("--max-rows", type=int, default=100_000)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    studies = {"recovery": recovery, "curve": curve, "versus": versus, "passes": passes}
    result = {"args": vars(args), **studies[args.study](args)}
    name = f"{args.study}_{args.activation}_d{args.d}_k{args.k}{args.tag}"
    write_json(RESULTS / f"{name}.json", result)


if __name__ == "__main__":
    main()
