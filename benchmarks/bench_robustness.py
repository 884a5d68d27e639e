"""NN-LIFT outside its comfort zone, side by side with random-init backprop on the same data and budget.

    OMP_NUM_THREADS=1 python benchmarks/bench_robustness.py --seeds 5            # every cell (about an hour)
    OMP_NUM_THREADS=1 python benchmarks/bench_robustness.py --seeds 2 --cells tanh,cond100,x_tiny

Per cell and seed: a planted teacher (regression: success = test MSE <= 1.1 x the noise floor; logistic teachers
for LiftClassifier: success = accuracy within 1 point of the Bayes classifier's), one LiftRegressor/LiftClassifier
fit with defaults and one BackpropRegressor/BackpropClassifier fit (LeCun start, same L-BFGS loop, same 200
iterations on the same 100k-row budget, on the data as given). Counted: NN-LIFT successes, backprop successes,
silent failures (NN-LIFT failed and said `reliable`), false alarms (NN-LIFT succeeded and said not reliable),
median fit time. Writes benchmarks/results/robustness.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import special

from nnlift import LiftClassifier, LiftRegressor
from nnlift._io import write_json
from nnlift.baselines import BackpropClassifier, BackpropRegressor
from nnlift.datasets import make_teacher

RESULTS = Path(__file__).parent / "results"
N_TEST = 20_000


@dataclass(frozen=True)
class Cell:
    name: str
    activation: str = "tanh"
    d: int = 20
    k: int = 5
    n: int = 200_000
    weight_scale: float = 1.5
    noise: float = 0.05
    condition: float = 1.0
    x_scale: float = 1.0
    x_offset: float = 0.0
    y_scale: float = 1.0
    y_offset: float = 0.0
    parallel_cos: float | None = None
    classify: bool = False
    coef_range: tuple = (0.5, 1.5)
    extra: dict = field(default_factory=dict)


CELLS = [
    Cell("tanh"), Cell("sigmoid", "sigmoid", weight_scale=2.0), Cell("sigmoid_scale3", "sigmoid", weight_scale=3.0),
    Cell("relu_d10", "relu", d=10, weight_scale=1.0), Cell("relu_d20", "relu", d=20, weight_scale=1.0),
    Cell("gelu_d10", "gelu", d=10, weight_scale=1.0), Cell("gelu_d30", "gelu", d=30, weight_scale=1.0),
    Cell("softplus_d10", "softplus", d=10), Cell("softplus_d20", "softplus", d=20),
    Cell("softplus_d30", "softplus", d=30),
    Cell("cond10", condition=10.0, x_offset=3.0), Cell("cond100", condition=100.0, x_offset=3.0),
    Cell("cond1e3", condition=1e3, x_offset=3.0), Cell("sigmoid_cond100", "sigmoid", weight_scale=2.0,
                                                        condition=100.0, x_offset=3.0),
    Cell("x_tiny", x_scale=1e-6), Cell("x_huge", x_scale=1e6), Cell("x_offset", x_scale=10.0, x_offset=2000.0),
    Cell("y_tiny", y_scale=1e-6), Cell("y_huge_offset", y_scale=1e6, y_offset=1e3),
    Cell("k_eq_d10", d=10, k=10, n=1_000_000), Cell("parallel_0.9", parallel_cos=0.9),
    Cell("parallel_0.97", parallel_cos=0.97, n=500_000),
    Cell("n2e3", n=2_000), Cell("n5e3", n=5_000), Cell("n2e4", n=20_000), Cell("n1e6", n=1_000_000),
    Cell("noise0.5", noise=0.5), Cell("noise1", noise=1.0),
    Cell("logistic", classify=True, coef_range=(0.5, 1.5)), Cell("logistic_strong", classify=True,
                                                                  coef_range=(2.0, 4.0)),
]


def _teacher(cell: Cell, seed: int):
    noise = 0.0 if cell.classify else cell.noise
    t = make_teacher(cell.n, cell.d, cell.k, cell.activation, noise=noise, weight_scale=cell.weight_scale,
                     random_state=seed, n_test=N_TEST, coef_range=cell.coef_range)
    rng = np.random.default_rng(10_000 + seed)
    if cell.parallel_cos is not None:  # column 1 at the given cos to column 0, same norm
        A = t.first_layer / np.linalg.norm(t.first_layer, axis=0)
        other = A[:, 1] - (A[:, 1] @ A[:, 0]) * A[:, 0]
        other /= np.linalg.norm(other)
        A[:, 1] = cell.parallel_cos * A[:, 0] + np.sqrt(1 - cell.parallel_cos**2) * other
        t = _relabel(replace(t, first_layer=cell.weight_scale * A), cell, rng)
    if cell.condition != 1.0 or cell.x_offset or cell.x_scale != 1.0:
        # x = mu + L z, cov eigenvalues log-spaced over the condition number (mean 1), random rotation; the
        # teacher acts on z, so its weights in x's coordinates are L^{-T} A.
        values = np.logspace(0.0, -np.log10(cell.condition), cell.d)
        values /= values.mean()
        rotation = np.linalg.qr(rng.standard_normal((cell.d, cell.d)))[0]
        L = cell.x_scale * rotation * np.sqrt(values)
        mu = cell.x_offset * cell.x_scale * rng.standard_normal(cell.d)
        t = replace(t, X=t.X @ L.T + mu, X_test=t.X_test @ L.T + mu, first_layer=np.linalg.solve(L.T, t.first_layer),
                    bias=t.bias - mu @ np.linalg.solve(L.T, t.first_layer))
    if cell.classify:
        t = _labels(t, rng)
    elif cell.y_scale != 1.0 or cell.y_offset:
        t = replace(t, y=cell.y_scale * t.y + cell.y_offset, y_test=cell.y_scale * t.y_test + cell.y_offset,
                    noise=cell.y_scale * t.noise)
    return t


def _relabel(t, cell: Cell, rng):
    """Targets of a teacher whose weights were changed (same inputs, fresh noise)."""
    y = t.predict(t.X) + cell.noise * rng.standard_normal(len(t.y))
    y_test = t.predict(t.X_test) + cell.noise * rng.standard_normal(len(t.y_test))
    return replace(t, y=y, y_test=y_test)


def _labels(t, rng):
    """Logistic teacher: y ~ Bernoulli(sigmoid(f(x))); keeps the test-set probabilities for the Bayes accuracy."""
    p, p_test = special.expit(t.predict(t.X)), special.expit(t.predict(t.X_test))
    return replace(t, y=(rng.random(len(p)) < p).astype(int), y_test=(rng.random(len(p_test)) < p_test).astype(int))


def _evaluate(model, t, cell: Cell) -> dict:
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(t.X, t.y)
    seconds = time.perf_counter() - started
    if cell.classify:
        accuracy = float(np.mean(model.predict(t.X_test) == t.y_test))
        bayes = float(np.mean((special.expit(_bayes_logit(t)) > 0.5) == t.y_test))
        row = {"accuracy": accuracy, "bayes_accuracy": bayes, "success": accuracy >= bayes - 0.01}
    else:
        mse = float(np.mean((model.predict(t.X_test) - t.y_test) ** 2))
        row = {"mse_over_noise": mse / t.noise**2, "success": mse <= 1.1 * t.noise**2}
    row["seconds"] = seconds
    row["warnings"] = sorted({type(w.message).__name__ for w in caught})
    diagnostics = getattr(model, "diagnostics_", None)
    if diagnostics is not None:
        row.update(reliable=diagnostics["reliable"], reasons=diagnostics["reasons"], winner=diagnostics["winner"],
                   doubts=diagnostics["doubts"], agreement=diagnostics["split_half_agreement"],
                   residual_structure=diagnostics["residual_structure"])
    return row


def _bayes_logit(t):
    return t.predict(t.X_test)


def run_cell(cell: Cell, seeds: int) -> dict:
    rows = []
    for seed in range(seeds):
        t = _teacher(cell, seed)
        budget = {"random_state": seed, "max_iter": 200, "max_rows": 100_000}
        if cell.classify:
            lift = LiftClassifier(cell.k, activation=cell.activation, **budget)
            back = BackpropClassifier(cell.k, activation=cell.activation, alpha=1e-6, **budget)
        else:
            lift = LiftRegressor(cell.k, activation=cell.activation, **budget)
            back = BackpropRegressor(cell.k, activation=cell.activation, alpha=1e-6, **budget)
        rows.append({"seed": seed, "nnlift": _evaluate(lift, t, cell), "backprop": _evaluate(back, t, cell)})
        lift_row, back_row = rows[-1]["nnlift"], rows[-1]["backprop"]
        metric = "accuracy" if cell.classify else "mse_over_noise"
        print(f"  {cell.name} seed {seed}: nnlift {lift_row[metric]:.4g} ok={lift_row['success']} "
              f"reliable={lift_row['reliable']} winner={lift_row['winner']} ({lift_row['seconds']:.1f} s) | "
              f"backprop {back_row[metric]:.4g} ok={back_row['success']}", flush=True)
    lift = [r["nnlift"] for r in rows]
    summary = {
        "nnlift_success": sum(r["success"] for r in lift),
        "backprop_success": sum(r["backprop"]["success"] for r in rows),
        "silent_failures": sum((not r["success"]) and r["reliable"] for r in lift),
        "false_alarms": sum(r["success"] and not r["reliable"] for r in lift),
        "median_seconds": float(np.median([r["seconds"] for r in lift])),
        "backprop_median_seconds": float(np.median([r["backprop"]["seconds"] for r in rows])),
    }
    return {"cell": cell.__dict__, "rows": rows, "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--cells", default="", help="comma-separated cell names (default: all)")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    wanted = [c for c in CELLS if not args.cells or c.name in args.cells.split(",")]
    results = []
    print("| cell | NN-LIFT ok | backprop ok | silent failures | false alarms | NN-LIFT s | backprop s |")
    print("|---|---|---|---|---|---|---|")
    for cell in wanted:
        result = run_cell(cell, args.seeds)
        results.append(result)
        s = result["summary"]
        print(f"| {cell.name} | {s['nnlift_success']}/{args.seeds} | {s['backprop_success']}/{args.seeds} | "
              f"{s['silent_failures']} | {s['false_alarms']} | {s['median_seconds']:.1f} | "
              f"{s['backprop_median_seconds']:.1f} |", flush=True)
        write_json(RESULTS / f"robustness{args.tag}.json", {"seeds": args.seeds, "cells": results})
    fits = len(results) * args.seeds
    silent = sum(r["summary"]["silent_failures"] for r in results)
    successes = sum(r["summary"]["nnlift_success"] for r in results)
    alarms = sum(r["summary"]["false_alarms"] for r in results)
    print(f"\nsilent failures {silent}/{fits} fits ({silent / fits:.1%}); false alarms {alarms}/{successes} "
          f"successful fits ({alarms / max(successes, 1):.1%})")


if __name__ == "__main__":
    main()
