"""First- and second-order optimisers on one deep autoencoder: gradient descent, classical momentum, K-FAC,
Hessian-free, damped and undamped Newton-CG on the exact Hessian, and nonlinear CG (Fletcher-Reeves and
Polak-Ribière+, each with and without periodic restarts); the seed lecture's slides 12-18.

Problem: part 2 of the `momentum` study (Sutskever et al. 2013; Martens 2010's autoencoder task on the digits): a tanh
autoencoder 64-32-16-8-16-32-64 with a linear output, on scikit-learn's digits scaled to [0, 1] (pixels/16), loss
`mse_loss` (mean over rows and pixels), in float64; every run starts from the momentum study's initialisation
(`BatchedMLP` from `torch.Generator().manual_seed(random_state)`) copied into `nn.Linear` layers (K-FAC needs them).
The reference level is the error of PCA with as many components as the bottleneck, the optimum of a linear
autoencoder (Baldi & Hornik 1989). The network has 5,544 parameters, too many for `nnlift.optim.Newton`'s dense
Hessian (a 1,172-parameter autoencoder already took 11 s per Newton step on the shared development machine), so
"Newton" is Newton-CG on the exact Hessian: `HessianFree(curvature="hessian")`, truncated CG on (H + λI)p = −∇L,
which stops at the first direction of negative curvature, then an Armijo line search. Damped: λ adapted by
Levenberg-Marquardt from λ₀; undamped: λ = 0 (the rule keeps it at 0), the Newton system of an indefinite H
(N&W §7.1).

Methods (the grid value with the lowest loss at the epoch budget is each method's run; every grid point is kept):
gd, full-batch `torch.optim.SGD`; cm, classical momentum 0.9 on minibatches (`torch.optim.SGD`, Martens & Grosse's
baseline); kfac, `nnlift.optim.KFAC` on the same minibatches (Monte-Carlo Fisher, step size and momentum from the
exact quadratic model, M&G §7; the grid is over λ₀); hf, `nnlift.optim.HessianFree` (Gauss-Newton, full batch, grid
over λ₀); newton-damped and newton (above); fr, fr-restart, pr+, pr+-restart: `nnlift.optim.NonlinearCG` (strong
Wolfe line search) with β of Fletcher-Reeves or Polak-Ribière+, restarted every `restart_every` steps or only by the
class's own rules (β_PR < 0 for PR+, a non-descent direction, and every P = 5,544 steps, never reached here).

Counting ("epochs"), as benchmarks/bench_optimizers.py does: every sweep of the network over rows counts those rows,
whatever it computes: a loss, a gradient, one curvature-vector product per vector, the linearisation pass of a
curvature operator, K-FAC's factor pass, every line-search trial. The counts come from wrapping nnlift's
`FunctionalLoss.loss`/`.gradient`, `CurvatureOperator._matmat`, the operators' `_linearize` and
`kfac.kronecker_factors` while a run steps, and from the closures of the torch optimisers. Epochs = rows / N. The
loss on all rows is recorded (untimed, uncounted) at least every `eval_every` epochs; wall time is the optimiser's
own (perf_counter around each step).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

import nnlift.optim.kfac as kfac_module
from nnlift.landscape import lanczos
from nnlift.landscape.operators import (
    CurvatureOperator,
    FunctionalLoss,
    GaussNewtonOperator,
    HessianOperator,
)
from nnlift.optim import KFAC, HessianFree, NonlinearCG

from ._common import BatchedMLP, fmt, markdown_table, progress, save_study, verdict
from .momentum import MomentumConfig

__all__ = ["CLAIM", "OptimizersConfig", "METHODS", "autoencoder_data", "pca_error", "make_autoencoder", "Passes",
           "minibatches", "counting", "drive", "verdicts", "run", "save", "report"]

CLAIM = ("Martens (2010), 'Deep learning via Hessian-free optimization' (ICML): Hessian-free optimisation, on the "
         "Gauss-Newton matrix rather than the Hessian (§4.2), trains deep autoencoders to lower error than "
         "first-order methods. Martens & Grosse (2015), 'Optimizing neural networks with Kronecker-factored "
         "approximate curvature' (ICML): K-FAC makes much more progress per epoch than well-tuned SGD with momentum "
         "on deep autoencoders. Nocedal & Wright (2006), 'Numerical Optimization', ch. 5: Polak-Ribière+ with "
         "restarts is typically better than Fletcher-Reeves, whose directions can 'jam' (become almost orthogonal "
         "to the gradient) unless restarted. Newton's method needs damping on a non-convex problem: with an "
         "indefinite Hessian its steps point at saddles (the seed lecture's slide 16; Dauphin et al. 2014), and the "
         "damped (Levenberg-Marquardt / Gauss-Newton) methods are the usable second-order ones.")

METHODS = ("gd", "cm", "kfac", "hf", "newton-damped", "newton", "fr", "fr-restart", "pr+", "pr+-restart")
DAMPED_SECOND_ORDER = ("hf", "newton-damped")
REACH_PREDICTED = ("cm", "kfac", "hf")  # to reach the PCA level within the budget (M&G 2015, Martens 2010)
MISS_PREDICTED = ("gd",)  # plain GD on the pathological curvature of deep autoencoders (slide 12; Martens 2010 §2)


@dataclass
class OptimizersConfig:
    """Autoencoder (hidden sizes, rows), epoch budget, loss-recording interval, minibatch rows, the grids, CM's
    momentum, the restart period of the restarted CG runs, a per-run wall-time cap, the verdicts' relative margin."""

    hidden: list[int] = field(default_factory=lambda: list(MomentumConfig().hidden))
    n_rows: int | None = None
    epochs: float = 300.0
    eval_every: float = 2.0
    batch: int = 100
    gd_lrs: list[float] = field(default_factory=lambda: [0.3, 1.0, 3.0])
    cm_lrs: list[float] = field(default_factory=lambda: [0.3, 1.0, 3.0])
    momentum: float = 0.9
    kfac_dampings: list[float] = field(default_factory=lambda: [1e-3, 1e-2, 1e-1])
    hf_dampings: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0])
    newton_dampings: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0])
    restart_every: int = 20
    max_seconds: float = 300.0
    margin: float = 0.05

    @classmethod
    def fast(cls) -> OptimizersConfig:
        return cls(hidden=[16, 8, 16], n_rows=300, epochs=40.0, eval_every=1.0, batch=50, gd_lrs=[1.0, 3.0],
                   cm_lrs=[0.3, 1.0], kfac_dampings=[1e-2], hf_dampings=[0.1], newton_dampings=[0.1],
                   restart_every=10, max_seconds=60.0)


def autoencoder_data(n_rows: int | None, random_state: int) -> torch.Tensor:
    """The momentum study's data: digits/16 in float64, `n_rows` of them drawn as that study draws them."""
    X = load_digits().data / 16.0
    if n_rows is not None:
        X = X[np.random.default_rng(random_state).permutation(len(X))[:n_rows]]
    return torch.as_tensor(X, dtype=torch.float64)


def pca_error(X: torch.Tensor, components: int) -> float:
    """Mean squared reconstruction error of PCA with `components` components (Eckart-Young: the sum of the
    discarded squared singular values of the centred data over its number of entries)."""
    centered = X.numpy() - X.numpy().mean(axis=0)
    return float((np.linalg.svd(centered, compute_uv=False) ** 2)[components:].sum() / X.numel())


def make_autoencoder(hidden: list[int], random_state: int, width: int = 64) -> nn.Sequential:
    """The momentum study's tanh autoencoder at that study's initialisation, as float64 `nn.Linear` layers."""
    net = BatchedMLP([width, *hidden, width], 1, "tanh", generator=torch.Generator().manual_seed(random_state))
    layers: list[nn.Module] = []
    for index, (W, b) in enumerate(zip(net.weights, net.biases, strict=True)):
        linear = nn.Linear(W.shape[1], W.shape[2], dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(W[0].T)
            linear.bias.copy_(b[0, 0])
        layers.append(linear)
        if index < len(net.weights) - 1:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def _full_loss(model: nn.Module, X: torch.Tensor) -> float:
    with torch.no_grad():
        return float(F.mse_loss(model(X), X))


class Passes:
    """Rows swept through the network, by kind (module docstring)."""

    def __init__(self):
        self.rows: Counter = Counter()

    def add(self, kind: str, rows: int) -> None:
        self.rows[kind] += int(rows)

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def _rows(batches) -> int:
    return sum(X.shape[0] for X, _ in batches)


@contextlib.contextmanager
def counting(passes: Passes) -> Iterator[None]:
    """Count, into `passes`, every pass that nnlift's second-order optimisers make over the data, by wrapping their
    entry points for the duration (restored on exit)."""
    loss, gradient, matmat = FunctionalLoss.loss, FunctionalLoss.gradient, CurvatureOperator._matmat
    hessian, gauss_newton, factors = HessianOperator._linearize, GaussNewtonOperator._linearize, \
        kfac_module.kronecker_factors

    def linearized(original):
        def counted(self, X, y):
            passes.add("linearize", X.shape[0])
            return original(self, X, y)
        return counted

    def counted_loss(self, theta=None):
        passes.add("loss", _rows(self.data))
        return loss(self, theta)

    def counted_gradient(self, theta=None):
        passes.add("gradient", _rows(self.data))
        return gradient(self, theta)

    def counted_matmat(self, V):
        passes.add("curvature_product", _rows(self.objective.data) * V.shape[1])
        return matmat(self, V)

    def counted_factors(model, loss_name, data, **kwargs):
        passes.add("kfac_factors", _rows(data) * kwargs.get("mc_samples", 1))
        return factors(model, loss_name, data, **kwargs)

    patches = [(FunctionalLoss, "loss", counted_loss, loss), (FunctionalLoss, "gradient", counted_gradient, gradient),
               (CurvatureOperator, "_matmat", counted_matmat, matmat),
               (HessianOperator, "_linearize", linearized(hessian), hessian),
               (GaussNewtonOperator, "_linearize", linearized(gauss_newton), gauss_newton),
               (kfac_module, "kronecker_factors", counted_factors, factors)]
    try:
        for owner, name, new, _ in patches:
            setattr(owner, name, new)
        yield
    finally:
        for owner, name, _, old in patches:
            setattr(owner, name, old)


def minibatches(X: torch.Tensor, batch: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless epochs of X in `batch`-row minibatches, reshuffled each epoch by one seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield from (X[index] for index in torch.randperm(len(X), generator=generator).split(batch))


def _sgd(model, X, passes, config, seed, *, lr: float, full_batch: bool) -> Iterator[dict]:
    """gd (full batch, no momentum) or cm (classical momentum `config.momentum` on minibatches)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.0 if full_batch else config.momentum)
    batches = itertools.repeat(X) if full_batch else minibatches(X, config.batch, seed)
    for Xb in batches:
        optimizer.zero_grad()
        F.mse_loss(model(Xb), Xb).backward()
        passes.add("gradient", len(Xb))
        optimizer.step()
        yield {}


def _kfac(model, X, passes, config, seed, *, damping: float) -> Iterator[dict]:
    """K-FAC with α and μ from the exact quadratic model (M&G 2015 §7) on the minibatches."""
    optimizer = KFAC(model, loss="mse", lr=None, momentum=None, damping=damping, random_state=seed)
    for Xb in minibatches(X, config.batch, seed):
        optimizer.step(lambda Xb=Xb: (Xb, Xb))
        yield {}


def _hessian_free(model, X, passes, config, seed, *, damping: float, curvature: str) -> Iterator[dict]:
    """HF (Martens 2010, Algorithm 1) on the Gauss-Newton matrix, or Newton-CG on the Hessian, full batch."""
    optimizer = HessianFree(model, F.mse_loss, damping=damping, curvature=curvature)
    while True:
        optimizer.step(lambda: (X, X))
        state = optimizer.global_state
        yield {"step_size": state["step_size"], "damping": state["damping"], "cg_iterations": state["cg_iterations"]}


def _nonlinear_cg(model, X, passes, config, seed, *, method: str, restart_every: int | None) -> Iterator[dict]:
    """Nonlinear CG (N&W Algorithm 5.4 / eq. 5.45), full batch; per step cos θ_k = −∇f_kᵀd_k / (‖∇f_k‖‖d_k‖)."""
    optimizer = NonlinearCG(model.parameters(), method=method, restart_every=restart_every)

    def closure():
        optimizer.zero_grad()
        loss = F.mse_loss(model(X), X)
        loss.backward()
        passes.add("gradient", len(X))
        return loss

    while True:
        optimizer.step(closure)
        state = optimizer.state[optimizer.param_groups[0]["params"][0]]
        g, d = state["prev_grad"], state["direction"]
        yield {"cos": float(-(g @ d) / (g.norm() * d.norm())), "restart": state["since_restart"] == 1,
               "step_size": state["step_size"]}


def _grid(config: OptimizersConfig) -> dict[str, list[tuple[Callable, dict]]]:
    """Every method's runs: (stepper, keyword arguments)."""
    restarted = config.restart_every
    return {"gd": [(_sgd, dict(lr=lr, full_batch=True)) for lr in config.gd_lrs],
            "cm": [(_sgd, dict(lr=lr, full_batch=False)) for lr in config.cm_lrs],
            "kfac": [(_kfac, dict(damping=d)) for d in config.kfac_dampings],
            "hf": [(_hessian_free, dict(damping=d, curvature="gauss_newton")) for d in config.hf_dampings],
            "newton-damped": [(_hessian_free, dict(damping=d, curvature="hessian")) for d in config.newton_dampings],
            "newton": [(_hessian_free, dict(damping=0.0, curvature="hessian"))],
            "fr": [(_nonlinear_cg, dict(method="FR", restart_every=None))],
            "fr-restart": [(_nonlinear_cg, dict(method="FR", restart_every=restarted))],
            "pr+": [(_nonlinear_cg, dict(method="PR+", restart_every=None))],
            "pr+-restart": [(_nonlinear_cg, dict(method="PR+", restart_every=restarted))]}


def _warm_up(grid: dict, template: nn.Module, X: torch.Tensor, config: OptimizersConfig, seed: int) -> None:
    """Two untimed steps of every method on a copy, so that no timed run pays torch's and curvlinops' first calls."""
    for stepper, setting in (runs[0] for runs in grid.values()):
        steps = stepper(copy.deepcopy(template), X, Passes(), config, seed, **setting)
        for _ in range(2):
            next(steps)


def _within(axis: list[float], values: list[float], budget: float) -> float:
    """The last value recorded at or within `budget` on `axis` (non-finite or None, as in the JSON: inf)."""
    value = [v for b, v in zip(axis, values, strict=True) if b <= budget * (1 + 1e-12)][-1]
    return value if value is not None and math.isfinite(value) else math.inf


def drive(stepper: Callable, setting: dict, template: nn.Module, X: torch.Tensor, config: OptimizersConfig,
          seed: int) -> dict:
    """One run from a copy of `template` until `config.epochs` epochs (or `max_seconds`: status "time cap", or
    divergence: a loss not finite or above 10× the start, whose loss at the budget is then inf); its trace (epochs,
    seconds, loss on all rows) and per-step records."""
    model, passes, n = copy.deepcopy(template), Passes(), len(X)
    start = _full_loss(model, X)
    trace, seconds, next_eval, status, records = [(0.0, 0.0, start)], 0.0, config.eval_every, "budget", []
    with counting(passes):
        steps = stepper(model, X, passes, config, seed, **setting)
        while passes.total / n < config.epochs and seconds < config.max_seconds:
            began = time.perf_counter()
            records.append(next(steps))
            seconds += time.perf_counter() - began
            epochs = passes.total / n
            if epochs >= next_eval:
                loss = _full_loss(model, X)
                trace.append((epochs, seconds, loss))
                next_eval = (math.floor(epochs / config.eval_every) + 1) * config.eval_every
                if not (math.isfinite(loss) and loss <= 10 * start):
                    status = "diverged"
                    break
    if status == "budget" and passes.total / n < config.epochs:
        status = "time cap"
    if trace[-1][0] != passes.total / n:
        trace.append((passes.total / n, seconds, _full_loss(model, X)))
    epochs, times, losses = (list(column) for column in zip(*trace, strict=True))
    return {"setting": dict(setting), "status": status, "steps": len(records),
            "epochs": epochs[-1], "seconds": seconds,
            "loss_at_budget": math.inf if status == "diverged" else _within(epochs, losses, config.epochs),
            "passes_by_kind": {kind: rows / n for kind, rows in sorted(passes.rows.items())},
            "records": _summarise(records), "trace": {"epochs": epochs, "seconds": times, "loss": losses}}


def _summarise(records: list[dict]) -> dict:
    """Per-step diagnostics reduced to a few numbers (CG: cos θ quantiles and restarts; HF/Newton: stalls)."""
    if not records or not records[0]:
        return {}
    if "cos" in records[0]:
        cos = np.array([r["cos"] for r in records])
        return {"median_cos": float(np.median(cos)), "min_cos": float(cos.min()),
                "restarts": int(sum(r["restart"] for r in records)),
                "zero_steps": int(sum(r["step_size"] == 0 for r in records))}
    return {"zero_steps": int(sum(r["step_size"] == 0 for r in records)),
            "mean_cg_iterations": float(np.mean([r["cg_iterations"] for r in records])),
            "final_damping": float(records[-1]["damping"])}


def _first_below(run: dict, level: float, budget: float) -> float | None:
    """Epochs at the first recorded loss at or below `level` within `budget` epochs, None if none."""
    trace = run["trace"]
    return next((e for e, v in zip(trace["epochs"], trace["loss"], strict=True) if e <= budget and v <= level), None)


def _min_hessian_eigenvalue(model: nn.Module, X: torch.Tensor, random_state: int) -> float:
    """λ_min of the exact Hessian of the loss at the model's parameters (ARPACK Lanczos, `nnlift.landscape`)."""
    op = HessianOperator(model, F.mse_loss, (X, X))
    return float(lanczos(op, 1, "SA", tol=1e-4, random_state=random_state).values[0])


def verdicts(best: dict[str, dict], margin: float) -> dict[str, bool]:
    """Each claim from the best run of each method (`loss_at_budget`, `epochs_to_pca`, `records`): "better" means a
    loss at the epoch budget at least `margin` (relative) below the other's."""

    def loss(method):
        return best[method]["loss_at_budget"]

    def below(a, b):
        return loss(a) <= (1 - margin) * loss(b)

    damped = min(loss(m) for m in DAMPED_SECOND_ORDER)
    return {
        "kfac_beats_cm": below("kfac", "cm"),
        "hf_beats_gd": below("hf", "gd"),
        "hf_beats_cm": below("hf", "cm"),
        "gauss_newton_beats_hessian": below("hf", "newton-damped"),
        "pr_beats_fr": min(loss("pr+"), loss("pr+-restart")) <= (1 - margin) * loss("fr"),
        "fr_jams": best["fr"]["records"]["median_cos"] < best["pr+"]["records"]["median_cos"],
        "restarts_help_fr": below("fr-restart", "fr"),
        "undamped_newton_worse": not math.isfinite(loss("newton")) or loss("newton") >= (1 + margin) * damped,
        "pca_level_as_predicted": (all(best[m]["epochs_to_pca"] is not None for m in REACH_PREDICTED)
                                   and all(best[m]["epochs_to_pca"] is None for m in MISS_PREDICTED)),
    }


def run(fast: bool = False, verbose: int = 0, random_state: int = 0) -> dict:
    """Every method's grid from one initialisation on one data set; the best run of each; the verdicts."""
    began, began_cpu = time.perf_counter(), time.process_time()
    config = OptimizersConfig.fast() if fast else OptimizersConfig()
    X = autoencoder_data(config.n_rows, random_state)
    template = make_autoencoder(config.hidden, random_state)
    pca = pca_error(X, min(config.hidden))
    grid = _grid(config)
    _warm_up(grid, template, X, config, random_state)
    methods = {}
    with progress(verbose) as bar:
        task = bar.add_task("optimizers (runs)", total=sum(len(runs) for runs in grid.values()))
        for method, runs in grid.items():
            done = []
            for stepper, setting in runs:
                done.append(drive(stepper, setting, template, X, config, random_state))
                done[-1]["epochs_to_pca"] = _first_below(done[-1], pca, config.epochs)
                bar.advance(task)
            chosen = int(np.argmin([one["loss_at_budget"] for one in done]))
            methods[method] = {"best": chosen, "runs": done}
    best = {method: block["runs"][block["best"]] for method, block in methods.items()}
    lambda_min = _min_hessian_eigenvalue(template, X, random_state)
    agrees = verdicts(best, config.margin)
    agrees["hessian_indefinite_at_start"] = lambda_min < 0
    return {"config": asdict(config), "random_state": random_state, "n_rows": len(X),
            "n_params": sum(p.numel() for p in template.parameters()), "start_loss": _full_loss(template, X),
            "pca_error": pca, "hessian_min_eigenvalue_at_start": lambda_min, "methods": methods, "agrees": agrees,
            "wall_time_s": time.perf_counter() - began, "cpu_time_s": time.process_time() - began_cpu}


COLORS = {method: f"C{index}" for index, method in enumerate(METHODS)}


def save(result: dict, out_dir) -> list[Path]:
    """optimizers.json and optimizers.png (loss vs epochs and vs optimiser seconds, the PCA level dotted; each
    method's chosen setting bold, the other grid points faint; the periodically restarted CG runs dashed)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(13, 4.8))
    axes = [figure.add_subplot(1, 2, i) for i in (1, 2)]
    left = {"epochs": 0.1, "seconds": 1e-3}
    for method, block in result["methods"].items():
        for index, one in enumerate(block["runs"]):
            chosen = index == block["best"]
            losses = [np.nan if v is None or not math.isfinite(v) else v for v in one["trace"]["loss"]]
            style = dict(color=COLORS[method], lw=1.6 if chosen else 0.7, alpha=1.0 if chosen else 0.3,
                         ls="--" if method.endswith("restart") else "-",
                         drawstyle="steps-post", label=f"{method} ({_label(one['setting'])})" if chosen else None)
            for ax, axis in zip(axes, ("epochs", "seconds"), strict=True):
                ax.plot([left[axis], *one["trace"][axis][1:]], losses, **style)
    for ax, xlabel in zip(axes, ("epochs (rows swept / N, curvature products and line searches included)",
                                 "optimiser wall time (s, one thread, shared machine)"), strict=True):
        ax.axhline(result["pca_error"], color="k", ls=":", lw=1.0, label="PCA level (bottleneck components)")
        ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel="training MSE (all rows)",
               ylim=(None, 1.5 * result["start_loss"]))
    axes[0].set_xlim(left=left["epochs"])
    axes[1].set_xlim(left=left["seconds"])
    axes[0].set_title(f"loss vs epochs (budget {result['config']['epochs']:g})")
    axes[1].set_title("loss vs wall time")
    axes[0].legend(fontsize=6.5, loc="lower left")
    return save_study(result, out_dir, "optimizers", figure)


def _label(setting: dict) -> str:
    """A grid point in words."""
    if "lr" in setting:
        return f"lr {setting['lr']:g}"
    if "method" in setting:
        return f"restart every {setting['restart_every']}" if setting["restart_every"] else "no periodic restart"
    return f"λ₀ {setting['damping']:g}"


def report(result: dict) -> str:
    """The claims next to the measured numbers: a per-method table, then the verdicts."""
    methods, pca, margin = result["methods"], result["pca_error"], result["config"]["margin"]
    best = {method: block["runs"][block["best"]] for method, block in methods.items()}
    budget = result["config"]["epochs"]
    early = budget / 3
    table = markdown_table(
        ["method", "setting", f"loss @ {early:g} epochs", f"loss @ {budget:g} epochs", "epochs to PCA level",
         "wall s", "steps", "end"],
        [[method, _label(one["setting"]), fmt(_within(one["trace"]["epochs"], one["trace"]["loss"], early)),
          fmt(one["loss_at_budget"]),
          "—" if one["epochs_to_pca"] is None else f"{one['epochs_to_pca']:.0f}", f"{one['seconds']:.1f}",
          one["steps"], one["status"]] for method, one in best.items()])

    def loss(method):
        return fmt(best[method]["loss_at_budget"])

    a, rec = result["agrees"], {m: best[m]["records"] for m in ("fr", "pr+", "newton")}
    reached = [f"{m} ({best[m]['epochs_to_pca']:.0f})" for m in METHODS if best[m]["epochs_to_pca"] is not None]
    rows = [
        ["Martens & Grosse 2015: K-FAC below SGD with momentum at equal epochs",
         f"K-FAC {loss('kfac')}, CM {loss('cm')}", verdict(a["kfac_beats_cm"])],
        ["Martens 2010: HF below first-order at equal epochs (full-batch GD)", f"HF {loss('hf')}, GD {loss('gd')}",
         verdict(a["hf_beats_gd"])],
        ["Martens 2010: HF below first-order at equal epochs (minibatch CM)", f"HF {loss('hf')}, CM {loss('cm')}",
         verdict(a["hf_beats_cm"])],
        ["Martens 2010 §4.2, slide 18: the Gauss-Newton matrix (HF) beats the exact Hessian (damped Newton-CG)",
         f"HF {loss('hf')}, damped Newton-CG {loss('newton-damped')}", verdict(a["gauss_newton_beats_hessian"])],
        ["N&W ch. 5: PR+ (with restarts) below FR", f"PR+ {loss('pr+')}, PR+ restarted {loss('pr+-restart')}, "
         f"FR {loss('fr')}", verdict(a["pr_beats_fr"])],
        ["N&W §5.2: FR jams, its directions nearly orthogonal to −∇f (median cos θ below PR+'s)",
         f"median cos θ FR {fmt(rec['fr']['median_cos'])}, PR+ {fmt(rec['pr+']['median_cos'])}",
         verdict(a["fr_jams"])],
        ["N&W §5.2: periodic restarts rescue FR", f"FR restarted {loss('fr-restart')}, FR {loss('fr')}",
         verdict(a["restarts_help_fr"])],
        ["the problem is non-convex where the runs start: λ_min(H(θ₀)) < 0",
         f"λ_min = {fmt(result['hessian_min_eigenvalue_at_start'])}", verdict(a["hessian_indefinite_at_start"])],
        ["slide 16: undamped Newton worse than damped second-order methods",
         f"Newton-CG λ = 0 {loss('newton')} ({rec['newton'].get('zero_steps', 0)} of {best['newton']['steps']} "
         f"steps without decrease, {fmt(rec['newton']['mean_cg_iterations'], 2)} CG iterations per step before "
         f"negative curvature or convergence), damped Newton-CG {loss('newton-damped')}, HF {loss('hf')}",
         verdict(a["undamped_newton_worse"])],
        [f"PCA level reached by {', '.join(REACH_PREDICTED)}, not by {', '.join(MISS_PREDICTED)}",
         "reached (epochs): " + (", ".join(reached) or "none"), verdict(a["pca_level_as_predicted"])],
    ]
    setting = (f"Autoencoder 64-{'-'.join(map(str, result['config']['hidden']))}-64 ({result['n_params']} parameters) "
               f"on {result['n_rows']} digits, start loss {fmt(result['start_loss'])}, PCA level {fmt(pca)}; "
               f"budget {budget:g} epochs per run; \"below\" means at least {margin:.0%} lower at the budget. "
               f"Each method's row is its grid point with the lowest loss at the budget; \"wall s\" is the "
               f"optimiser's own time on a shared machine. Study wall {result['wall_time_s']:.0f} s "
               f"(CPU {result['cpu_time_s']:.0f} s).")
    return (f"## optimizers\n\n{CLAIM}\n\n{setting}\n\n{table}\n\n"
            + markdown_table(["claim", "measured", "verdict"], rows))
