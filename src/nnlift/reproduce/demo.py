"""NN-LIFT vs random-init backprop on planted teachers, same data and same fine-tune budget."""

from __future__ import annotations

import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from .._io import atomic_write, write_json
from .._progress import ProgressReport
from ..baselines import BackpropRegressor
from ..datasets import make_teacher
from ..lift import LiftRegressor, NNLiftWarning
from ..metrics import reached_noise_floor, weight_recovery

__all__ = ["DemoConfig", "run", "save", "print_table"]


@dataclass
class DemoConfig:
    """The planted teacher, the sample sizes and the shared gradient budget (L-BFGS iterations and rows).

    The default is a regime where random-init backprop usually fails (ReLU teacher, k = d/2, mixed-sign output
    weights; see BENCHMARKS.md), and NN-LIFT's fourth-order moment usually gives a start that fine-tunes to
    the noise floor. Every fit is seeded by its seed and runs on `threads` torch and BLAS/OpenMP threads (see
    `_fixed_threads`), so the numbers repeat from run to run whatever the machine's thread count.
    """

    activation: str = "relu"
    d: int = 10
    k: int = 5
    n: int = 500_000
    n_test: int = 20_000
    noise: float = 0.05
    weight_scale: float = 1.0
    seeds: list[int] = field(default_factory=lambda: list(range(10)))
    max_iter: int = 200
    max_rows: int = 100_000
    success_tol: float = 0.1
    threads: int = 1


def _evaluate(model, teacher, seconds: float, tol: float) -> dict:
    mse = float(np.mean((model.predict(teacher.X_test) - teacher.y_test) ** 2))
    recovery = weight_recovery(teacher.first_layer, model.first_layer_)
    return {"test_mse": mse, "relative_excess": (mse - teacher.noise_var) / teacher.noise_var,
            "success": bool(reached_noise_floor(mse, teacher.noise_var, tol)),
            "recovery_min": float(recovery.min), "recovery_mean": float(recovery.mean), "seconds": seconds}


def run(config: DemoConfig, verbose: int = 1) -> dict:
    """Fit NN-LIFT and backprop on each seed's teacher; return per-seed numbers and the summary.

    Progress goes to stderr (`nnlift._progress`): a line per seed with both test errors, and the success counts.
    """
    rows = []
    total = len(config.seeds)
    with _fixed_threads(config.threads), ProgressReport("NN-LIFT vs backprop", total, verbose, unit="seeds") as report:
        for number, seed in enumerate(config.seeds, 1):
            started = time.perf_counter()
            rows.append(_compare(config, seed))
            report.log(f"seed {seed} ({number} of {total}): {_seed_outcome(rows[-1])}, "
                       f"{time.perf_counter() - started:.1f} s")
            report.advance()
        successes = {method: sum(r[method]["success"] for r in rows) for method in ("nnlift", "backprop")}
        report.finish(f"noise floor reached by NN-LIFT on {successes['nnlift']} of {total} seeds, by backprop on "
                      f"{successes['backprop']}")
    summary = {}
    for method in ("nnlift", "backprop"):
        results = [r[method] for r in rows]
        summary[method] = {
            "success_rate": float(np.mean([r["success"] for r in results])),
            "median_relative_excess": float(np.median([r["relative_excess"] for r in results])),
            "median_recovery_min": float(np.median([r["recovery_min"] for r in results])),
            "median_seconds": float(np.median([r["seconds"] for r in results])),
        }
    return {"config": asdict(config), "seeds": rows, "summary": summary}


@contextmanager
def _fixed_threads(threads: int):
    """Run the block with torch and every BLAS/OpenMP pool limited to `threads` threads; restore them after.

    Parallel float reductions split the sum by thread count, so the rounding, and after 200 L-BFGS steps from a
    random start sometimes the minimum reached, depends on the machine; a fixed count makes the numbers repeatable.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            yield
    finally:
        torch.set_num_threads(previous)


def _compare(config: DemoConfig, seed: int) -> dict:
    """NN-LIFT and backprop on the teacher of `seed`, with the same rows, budget and seed."""
    teacher = make_teacher(config.n, config.d, config.k, config.activation, noise=config.noise,
                           weight_scale=config.weight_scale, random_state=seed, n_test=config.n_test)
    budget = {"max_iter": config.max_iter, "max_rows": config.max_rows, "random_state": seed}
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NNLiftWarning)
        lift = LiftRegressor(config.k, activation=config.activation, **budget).fit(teacher.X, teacher.y)
    lift_row = _evaluate(lift, teacher, time.perf_counter() - started, config.success_tol)
    start = weight_recovery(teacher.first_layer, lift.initial_params_.first_layer)
    lift_row["start_recovery_min"] = float(start.min)
    lift_row["warnings"] = lift.diagnostics_["warnings"]
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        backprop = BackpropRegressor(config.k, activation=config.activation, alpha=0.0, **budget).fit(
            teacher.X, teacher.y)
    back_row = _evaluate(backprop, teacher, time.perf_counter() - started, config.success_tol)
    return {"seed": seed, "nnlift": lift_row, "backprop": back_row}


def _seed_outcome(row: dict) -> str:
    """The seed's outcome in words: "NN-LIFT test MSE 0.00254 (noise floor reached), backprop 0.037 (not reached)"."""
    lift, back = row["nnlift"], row["backprop"]
    return (f"NN-LIFT test MSE {lift['test_mse']:.3g} ({'noise floor reached' if lift['success'] else 'not reached'}), "
            f"backprop {back['test_mse']:.3g} ({'reached' if back['success'] else 'not reached'})")


def print_table(result: dict, console: Console | None = None) -> None:
    """The summary as a rich table."""
    table = Table(title="NN-LIFT vs backprop (same data, same L-BFGS budget)")
    for column in ("method", "success rate", "median excess/noise", "median min recovery", "median time (s)"):
        table.add_column(column, justify="right")
    for method, s in result["summary"].items():
        table.add_row(method, f"{s['success_rate']:.0%}", f"{s['median_relative_excess']:.3g}",
                      f"{s['median_recovery_min']:.3f}", f"{s['median_seconds']:.2f}")
    (console or Console()).print(table)


def save(result: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """Write results.json and results.png (relative excess risk per seed, and weight recovery)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    json_path = write_json(out_dir / "results.json", result)
    seeds = [r["seed"] for r in result["seeds"]]
    fig, (ax_risk, ax_rec) = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.4
    x = np.arange(len(seeds))
    for offset, method in ((-width / 2, "nnlift"), (width / 2, "backprop")):
        excess = [max(r[method]["relative_excess"], 1e-4) for r in result["seeds"]]
        ax_risk.bar(x + offset, excess, width, label=method)
        ax_rec.bar(x + offset, [r[method]["recovery_min"] for r in result["seeds"]], width, label=method)
    ax_risk.axhline(result["config"]["success_tol"], color="k", linestyle="--", label="success threshold")
    ax_risk.set(yscale="log", xlabel="seed", ylabel="(test MSE - noise) / noise, floored at 1e-4", xticks=x,
               xticklabels=seeds)
    ax_rec.set(xlabel="seed", ylabel="min |cos| to true neuron", ylim=(0, 1.05), xticks=x, xticklabels=seeds)
    ax_risk.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3, fontsize="small")
    cfg = result["config"]
    fig.suptitle(f"{cfg['activation']} teacher, d={cfg['d']}, k={cfg['k']}, n={cfg['n']:,}")
    fig.tight_layout()
    png_path = atomic_write(out_dir / "results.png", lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    return json_path, png_path
