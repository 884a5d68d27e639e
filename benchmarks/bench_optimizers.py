"""SGD with momentum, Adam, K-FAC, Hessian-free, nonlinear CG (PR+) and L-BFGS on the `momentum` study's deep
autoencoder: full training loss against data passes ("epochs") and against wall time.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_optimizers.py           # about 3 minutes on one core
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_optimizers.py --quick   # smoke run, seconds

Problem: part 2 of `nnlift.reproduce.momentum` (Sutskever et al. 2013; Martens 2010's autoencoder task, shrunk to
the digits): a tanh autoencoder 64-32-16-8-16-32-64 (`MomentumConfig().hidden`, linear output) on the 1,797
scikit-learn digits scaled to [0, 1] (pixels/16), loss `mse_loss` (the mean over rows and the 64 pixels), the
study's initialisation (its `BatchedMLP` from `torch.Generator().manual_seed(seed)`: LeCun normal weights, zero
biases, drawn in float32) copied into an `nn.Sequential` of `nn.Linear`/`nn.Tanh` (K-FAC needs `nn.Linear`) and
run in float64. The study has no public builder function (it builds the net inside `_autoencoder`), so its config,
`BatchedMLP` and seed are reused here and its two lines of data loading repeated. Every run starts from that same
initialisation on the same data; the minibatch runs share one seeded sequence of reshuffles (a new permutation
each epoch, batches of `--batch` rows, the last one short). The reference level is the study's: the error of PCA
with as many components as the bottleneck (8), the optimum of a linear autoencoder.

Optimisers and batch sizes (each grid has 3 values, centred on the best of a 4-value pilot at the same budget; the
table's row for each optimiser is the setting with the lowest training loss at the epoch budget, every setting is in
the JSON and in the second table):

- sgd: `torch.optim.SGD`, classical momentum 0.9, minibatches of `--batch` (100) rows, lr in {0.3, 1, 3}.
- adam: `torch.optim.Adam` (default betas), minibatches of 100, lr in {0.003, 0.01, 0.03}.
- kfac: `nnlift.optim.KFAC` (loss "mse", Monte-Carlo Fisher with one sample, moving averages 0.95, factored
  Tikhonov damping adapted by Levenberg-Marquardt every 5 steps), minibatches of 100, the step size α and the
  momentum μ chosen on the exact quadratic model every step (M&G 2015 §7, `lr=None, momentum=None`); with α and μ
  automatic there is no learning rate, so the grid is over the initial damping λ₀ in {0.001, 0.01, 0.1}.
- kfac-fixed: the same K-FAC with a fixed μ = 0.9 and a learning-rate grid α in {0.003, 0.01, 0.03} (λ₀ = 0.01,
  still adapted): K-FAC as a drop-in preconditioned SGD.
- hf: `nnlift.optim.HessianFree` (Gauss-Newton, Martens' CG stopping rule and CG backtracking, Levenberg-Marquardt
  damping, Armijo line search), full batch (gradient and curvature on all 1,797 rows), λ₀ in {0.01, 0.1, 1}.
- cg: `nnlift.optim.NonlinearCG` (Polak-Ribière+, strong Wolfe line search), full batch, defaults.
- lbfgs: `torch.optim.LBFGS` (history 100, strong Wolfe line search, 10 iterations per `step` call, no early stop),
  full batch.

Counting ("epochs"): every sweep of the network over rows of the data counts those rows, whatever it computes: a
loss evaluation (forward only), a gradient (forward and backward), one Gauss-Newton-vector product (`jvp` and
`vjp`, one per vector even when several vectors go through one `vmap`), the forward pass that linearises the model
for those products, and K-FAC's factor pass (curvlinops: forward and backward with sampled targets). Epochs = rows
counted / 1,797. Line-search trials, CG backtracking, K-FAC's damping check and torch L-BFGS's re-evaluation at the
start of each `step` call all count. The counts are taken by wrapping nnlift's `FunctionalLoss.loss`/`.gradient`,
`CurvatureOperator._matmat`, `GaussNewtonOperator._linearize` and `kfac.kronecker_factors` in this process (and the
closures of SGD, Adam, CG and L-BFGS), so they are those of the code as it runs; the JSON splits them by kind. A
pass is not a unit of work: a gradient costs about three forward passes and a Gauss-Newton product about four, so
the wall-time panel is the one that prices them.

Recording: the training loss on all 1,797 rows is evaluated (untimed and uncounted) after the first step at or past
every `--eval-every` (0.5) epochs (after every step for the full-batch methods, whose steps cost several epochs). A
run stops once it has used both `--epochs` (150) epochs and `--seconds` (10) of optimiser wall time, so that both
budgets can be read off every run, or at `--max-seconds` (40), or when the loss is not finite or above 10x its start
(diverged). "loss @ E epochs" and "loss @ T s" are the last recorded losses within each budget. Wall time is the
optimiser's own (perf_counter around each step, evaluations excluded), with one torch thread; it depends on the
machine and on its load, so the process CPU time of the steps is recorded next to it (CPU s / wall s well below 1
means the run shared its core).

Writes benchmarks/results/optimizers.json and optimizers.png (loss vs epochs, loss vs seconds, log y; the chosen
setting of each optimiser solid, the other grid settings faint); `--quick` writes optimizers_quick.*.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nnlift._io import atomic_write, write_json
from nnlift.optim import KFAC, HessianFree, NonlinearCG
from nnlift.reproduce._common import fmt, json_safe, markdown_table
from nnlift.reproduce.momentum import MomentumConfig
from nnlift.reproduce.optimizers import Passes, autoencoder_data, counting, make_autoencoder, minibatches, pca_error

RESULTS = Path(__file__).parent / "results"
MOMENTUM = 0.9
COLORS = {"sgd": "C0", "adam": "C1", "kfac": "C2", "kfac-fixed": "C6", "hf": "C3", "cg": "C4", "lbfgs": "C5"}


# ----------------------------------------------------------------------------------------------------------------------
# problem


def full_loss(model: nn.Module, X: torch.Tensor) -> float:
    with torch.no_grad():
        return float(F.mse_loss(model(X), X))


# ----------------------------------------------------------------------------------------------------------------------
# optimisers: each a generator that makes one step per `next`


def first_order(model, X, passes, cfg, *, kind: str, lr: float) -> Iterator[None]:
    if kind == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for Xb in minibatches(X, cfg.batch, cfg.seed):
        optimizer.zero_grad()
        F.mse_loss(model(Xb), Xb).backward()
        passes.add("gradient", len(Xb))
        optimizer.step()
        yield


def kfac(model, X, passes, cfg, *, lr: float | None, momentum: float | None, damping: float) -> Iterator[None]:
    optimizer = KFAC(model, loss="mse", lr=lr, momentum=momentum, damping=damping, random_state=cfg.seed)
    for Xb in minibatches(X, cfg.batch, cfg.seed):
        optimizer.step(lambda Xb=Xb: (Xb, Xb))
        yield


def hessian_free(model, X, passes, cfg, *, damping: float) -> Iterator[None]:
    optimizer = HessianFree(model, F.mse_loss, damping=damping)
    while True:
        optimizer.step(lambda: (X, X))
        yield


def _closure(model, optimizer, X, passes) -> Callable[[], torch.Tensor]:
    def closure():
        optimizer.zero_grad()
        loss = F.mse_loss(model(X), X)
        loss.backward()
        passes.add("gradient", len(X))
        return loss
    return closure


def nonlinear_cg(model, X, passes, cfg) -> Iterator[None]:
    optimizer = NonlinearCG(model.parameters(), method="PR+")
    closure = _closure(model, optimizer, X, passes)
    while True:
        optimizer.step(closure)
        yield


def lbfgs(model, X, passes, cfg) -> Iterator[None]:
    optimizer = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=10, max_eval=25, history_size=100,
                                  tolerance_grad=0.0, tolerance_change=0.0, line_search_fn="strong_wolfe")
    closure = _closure(model, optimizer, X, passes)
    while True:
        optimizer.step(closure)
        yield


def settings_of(cfg) -> dict[str, list[dict]]:
    """Every optimiser's grid: the keyword arguments of its runner."""
    return {"sgd": [dict(kind="sgd", lr=lr) for lr in cfg.sgd_lrs],
            "adam": [dict(kind="adam", lr=lr) for lr in cfg.adam_lrs],
            "kfac": [dict(lr=None, momentum=None, damping=d) for d in cfg.kfac_dampings],
            "kfac-fixed": [dict(lr=lr, momentum=MOMENTUM, damping=1e-2) for lr in cfg.kfac_lrs],
            "hf": [dict(damping=d) for d in cfg.hf_dampings],
            "cg": [{}], "lbfgs": [{}]}


RUNNERS = {"sgd": first_order, "adam": first_order, "kfac": kfac, "kfac-fixed": kfac, "hf": hessian_free,
           "cg": nonlinear_cg, "lbfgs": lbfgs}


# ----------------------------------------------------------------------------------------------------------------------
# driver


def drive(name: str, setting: dict, template: nn.Module, X: torch.Tensor, cfg) -> dict:
    """One run from the shared initialisation; its trace of (epochs, seconds, full training loss)."""
    model = copy.deepcopy(template)
    passes, N = Passes(), len(X)
    start_loss = full_loss(model, X)
    trace, seconds, next_eval, status = [(0.0, 0.0, start_loss)], 0.0, cfg.eval_every, "budget"
    steps, cpu_seconds = 0, 0.0
    with counting(passes):
        stepper = RUNNERS[name](model, X, passes, cfg, **setting)
        while (passes.total / N < cfg.epochs or seconds < cfg.seconds) and seconds < cfg.max_seconds:
            began, began_cpu = time.perf_counter(), time.process_time()
            try:
                next(stepper)
            except StopIteration:
                status = "stopped"
                break
            seconds += time.perf_counter() - began
            cpu_seconds += time.process_time() - began_cpu
            steps += 1
            epochs = passes.total / N
            if epochs >= next_eval:
                loss = full_loss(model, X)
                trace.append((epochs, seconds, loss))
                next_eval = (math.floor(epochs / cfg.eval_every) + 1) * cfg.eval_every
                if not (math.isfinite(loss) and loss <= 10 * start_loss):
                    status = "diverged"
                    break
    if trace[-1][0] != passes.total / N:
        trace.append((passes.total / N, seconds, full_loss(model, X)))
    epochs, times, losses = (list(column) for column in zip(*trace, strict=True))
    return {"optimizer": name, "setting": setting, "status": status, "steps": steps, "epochs": epochs[-1],
            "seconds": seconds, "cpu_seconds": cpu_seconds, "final_loss": losses[-1],
            "loss_at_epochs": _within(epochs, losses, cfg.epochs),
            "loss_at_seconds": _within(times, losses, cfg.seconds),
            "epochs_at_seconds": _within(times, epochs, cfg.seconds),
            "seconds_at_epochs": _within(epochs, times, cfg.epochs),
            "passes_by_kind": {kind: rows / N for kind, rows in sorted(passes.rows.items())},
            "trace": {"epochs": epochs, "seconds": times, "loss": losses}}


def warm_up(template: nn.Module, X: torch.Tensor, cfg, grids: dict) -> None:
    """Two untimed steps of every optimiser, so that no timed run pays torch's and curvlinops' first-call costs."""
    for name in cfg.optimizers:
        passes = Passes()
        stepper = RUNNERS[name](copy.deepcopy(template), X, passes, cfg, **grids[name][0])
        with counting(passes):
            for _ in range(2):
                next(stepper)
        needed = {"loss", "gradient", "curvature_product" if name == "hf" else "kfac_factors"}
        if name in ("kfac", "kfac-fixed", "hf") and not needed <= set(passes.rows):
            raise RuntimeError(f"{name}: the pass counting saw {dict(passes.rows)}; nnlift's entry points have "
                               "changed, update `counting`")


def _within(budget_axis: list[float], values: list[float], budget: float) -> float:
    """The last value recorded at or within `budget` on `budget_axis` (diverged values count as inf)."""
    kept = [v for b, v in zip(budget_axis, values, strict=True) if b <= budget * (1 + 1e-12)]
    value = kept[-1]
    return value if math.isfinite(value) else math.inf


def _label(name: str, setting: dict) -> str:
    if name in ("sgd", "adam"):
        return f"lr={setting['lr']:g}" + (f", momentum={MOMENTUM:g}" if name == "sgd" else "")
    if name == "kfac":
        return f"λ₀={setting['damping']:g}, α and μ automatic"
    if name == "kfac-fixed":
        return f"α={setting['lr']:g}, μ={setting['momentum']:g}, λ₀={setting['damping']:g}"
    if name == "hf":
        return f"λ₀={setting['damping']:g}"
    return "defaults"


def batch_of(name: str, cfg, n_rows: int) -> int:
    return cfg.batch if name in ("sgd", "adam", "kfac", "kfac-fixed") else n_rows


# ----------------------------------------------------------------------------------------------------------------------
# figure and table


def figure(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = result["config"]
    left = {"epochs": 0.1, "seconds": 1e-2}
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for name, block in result["optimizers"].items():
        color = COLORS[name]
        for index, run in enumerate(block["runs"]):
            trace, best = run["trace"], index == block["best"]
            losses = [np.nan if not (v is not None and math.isfinite(v)) else v for v in trace["loss"]]
            style = dict(color=color, lw=1.8 if best else 0.8, alpha=1.0 if best else 0.35, drawstyle="steps-post",
                         label=f"{name} ({_label(name, run['setting'])})" if best else None)
            for ax, axis in zip(axes, ("epochs", "seconds"), strict=True):  # the start drawn at the left edge
                ax.plot([left[axis], *trace[axis][1:]], losses, **style)
    for ax, budget, xlabel in ((axes[0], cfg["epochs"], "epochs (rows swept / N; curvature products and line "
                                                          "searches included)"),
                               (axes[1], cfg["seconds"], "optimiser wall time (s, one thread)")):
        ax.axhline(result["pca_error"], color="k", ls="--", lw=0.8, label="PCA, 8 components")
        ax.axvline(budget, color="gray", ls=":", lw=0.8)
        ax.set(yscale="log", xscale="log", xlabel=xlabel, ylabel="training MSE (all rows)",
               ylim=(None, 1.5 * result["start_loss"]))  # a diverged run leaves through the top
    axes[0].set_xlim(left=left["epochs"])
    axes[1].set_xlim(left=left["seconds"])
    axes[0].set_title(f"loss vs epochs (budget {cfg['epochs']:g}, dotted)")
    axes[1].set_title(f"loss vs wall time (budget {cfg['seconds']:g} s, dotted)")
    axes[0].legend(fontsize=7, loc="upper right")
    fig.suptitle(f"tanh autoencoder 64-{'-'.join(map(str, cfg['hidden']))}-64 on digits (N={result['n_rows']}), "
                 "same initialisation; the loss of the latest evaluated iterate (steps); faint: other grid settings",
                 fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return path


def _first_below(run: dict, level: float) -> str:
    """"epochs / seconds" at the first recorded loss at or below `level`, "—" if never."""
    trace = run["trace"]
    for epochs, seconds, loss in zip(trace["epochs"], trace["seconds"], trace["loss"], strict=True):
        if loss is not None and loss <= level:
            return f"{epochs:.0f} / {seconds:.2f}"
    return "—"


def table(result: dict) -> str:
    cfg = result["config"]
    rows = []
    for name, block in result["optimizers"].items():
        run = block["runs"][block["best"]]
        rows.append([name, _label(name, run["setting"]), str(block["batch"]), _first_below(run, result["pca_error"]),
                     fmt(run["loss_at_epochs"]),
                     f"{run['seconds_at_epochs']:.1f}", fmt(run["loss_at_seconds"]), f"{run['epochs_at_seconds']:.0f}",
                     fmt(run["final_loss"]), f"{run['epochs']:.0f}", f"{run['seconds']:.1f}",
                     f"{run['cpu_seconds']:.1f}", run["status"]])
    header = ["optimiser", "setting chosen", "batch", "epochs / s to PCA level", f"loss @ {cfg['epochs']:g} epochs",
              "s to that point",
              f"loss @ {cfg['seconds']:g} s", "epochs in that time", "final loss", "epochs used", "wall s", "CPU s",
              "end"]
    return markdown_table(header, rows)


def grid_table(result: dict) -> str:
    rows = []
    for name, block in result["optimizers"].items():
        for index, run in enumerate(block["runs"]):
            rows.append([name, _label(name, run["setting"]) + (" *" if index == block["best"] else ""),
                         fmt(run["loss_at_epochs"]), fmt(run["loss_at_seconds"]), fmt(run["final_loss"]),
                         run["status"]])
    cfg = result["config"]
    return markdown_table(["optimiser", "setting", f"loss @ {cfg['epochs']:g} epochs", f"loss @ {cfg['seconds']:g} s",
                           "final loss", "end"], rows)


# ----------------------------------------------------------------------------------------------------------------------


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--optimizers", nargs="+", choices=list(RUNNERS), default=list(RUNNERS))
    parser.add_argument("--epochs", type=float, default=150.0, help="epoch budget E")
    parser.add_argument("--seconds", type=float, default=10.0, help="wall-time budget T per run")
    parser.add_argument("--max-seconds", type=float, default=40.0, help="hard cap of one run's optimiser time")
    parser.add_argument("--batch", type=int, default=100, help="minibatch rows (sgd, adam, kfac)")
    parser.add_argument("--eval-every", type=float, default=0.5, help="epochs between loss evaluations")
    parser.add_argument("--n-rows", type=int, default=None, help="rows of digits (default all 1,797)")
    parser.add_argument("--sgd-lrs", nargs="+", type=float, default=[0.3, 1.0, 3.0])
    parser.add_argument("--adam-lrs", nargs="+", type=float, default=[3e-3, 1e-2, 3e-2])
    parser.add_argument("--kfac-dampings", nargs="+", type=float, default=[1e-3, 1e-2, 1e-1])
    parser.add_argument("--kfac-lrs", nargs="+", type=float, default=[0.003, 0.01, 0.03])
    parser.add_argument("--hf-dampings", nargs="+", type=float, default=[0.01, 0.1, 1.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke run: 300 rows, 3 epochs, 1 s budgets")
    parser.add_argument("--tag", default="", help="suffix for the result files")
    parser.add_argument("--plot-only", action="store_true", help="redraw the figure and tables from the JSON")
    args = parser.parse_args(argv)
    suffix = args.tag
    if args.plot_only:
        import json

        result = json.loads((RESULTS / f"optimizers{suffix or ('_quick' if args.quick else '')}.json").read_text())
        print(table(result), grid_table(result), sep="\n\n")
        print(figure(result, RESULTS / f"optimizers{suffix or ('_quick' if args.quick else '')}.png"))
        return
    if args.quick:
        args.n_rows, args.epochs, args.seconds, args.max_seconds, args.eval_every = 300, 3.0, 0.3, 2.0, 0.5
        args.sgd_lrs, args.adam_lrs, args.kfac_dampings, args.kfac_lrs, args.hf_dampings = [1.0], [1e-2], [1e-2], \
            [0.01], [0.1]
        suffix = suffix or "_quick"
    args.hidden = MomentumConfig().hidden
    started = time.perf_counter()
    X = autoencoder_data(args.n_rows, args.seed)
    template = make_autoencoder(args.hidden, args.seed)
    grids = settings_of(args)
    warm_up(template, X, args, grids)
    result = {"command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_optimizers.py "
                         + " ".join(argv if argv is not None else sys.argv[1:]),
              "config": {key: value for key, value in vars(args).items()}, "n_rows": len(X),
              "n_params": sum(p.numel() for p in template.parameters()), "torch_threads": torch.get_num_threads(),
              "pca_error": pca_error(X, min(args.hidden)), "start_loss": full_loss(template, X), "optimizers": {}}
    for name in args.optimizers:
        runs = []
        for setting in grids[name]:
            run = drive(name, setting, template, X, args)
            runs.append(run)
            print(f"{name:10s} {_label(name, setting):40s} loss@E {fmt(run['loss_at_epochs'])}  "
                  f"loss@T {fmt(run['loss_at_seconds'])}  final {fmt(run['final_loss'])} after {run['epochs']:.0f} "
                  f"epochs, {run['seconds']:.1f} s ({run['status']})", flush=True)
        best = int(np.argmin([run["loss_at_epochs"] for run in runs]))
        result["optimizers"][name] = {"batch": batch_of(name, args, len(X)), "best": best, "runs": runs}
    result["wall_seconds"] = time.perf_counter() - started
    print(f"\n{result['command']}  (N = {len(X)}, {result['n_params']} parameters, start loss "
          f"{fmt(result['start_loss'])}, PCA-8 error {fmt(result['pca_error'])})\n")
    print(table(result))
    print()
    print(grid_table(result))
    json_path = write_json(RESULTS / f"optimizers{suffix}.json", json_safe(result))
    png_path = figure(result, RESULTS / f"optimizers{suffix}.png")
    print(f"\nwall {result['wall_seconds']:.0f} s; {json_path}, {png_path}")


if __name__ == "__main__":
    main()
