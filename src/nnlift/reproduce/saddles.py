"""Saddle points: training error vs the index of critical points, and who escapes saddles (Dauphin, Pascanu,
Gulcehre, Cho, Ganguli & Bengio 2014, "Identifying and attacking the saddle point problem in high-dimensional
non-convex optimization", NeurIPS; the seed lecture's slides 9-11, 16, 19-20 and 37).

Part 1: a small tanh MLP 16-h-10 on scikit-learn's digits average-pooled to 4×4 (16 inputs; the
paper downsamples MNIST to 10×10), a subset of the training rows, squared error on one-hot targets plus a small
weight penalty (wd/2)‖θ‖². The penalty makes the critical points isolated: without it the flat directions of
saturated tanh units stop every Newton-type search at points where the gradient is small but lies in the Hessian's
near-null space ("gradient-flat" points, Frye et al. 2019), never at a critical point. Critical points are searched
from points along gradient-descent trajectories and from random starts by Levenberg-Marquardt on ½‖∇L‖² (the damped
Gauss-Newton step −(H² + μI)⁻¹H∇L, which goes to critical points of any index, saddles included); a search counts
as converged when ‖∇L‖ ≤ `grad_tol`, and the others are reported as stalled. For each critical point: the
training error and the index α = fraction of negative Hessian eigenvalues (`nnlift.landscape.critical_point_index`
on the dense Hessian of `HessianOperator` plus wd·I). The paper: the error increases with the index, and the
critical points of low error are minima.

Part 2: from one shared random start of the same MLP (squared error, no penalty), mini-batch SGD
with momentum, damped Newton (`nnlift.optim.Newton`, Armijo line search, best damping of a grid) and saddle-free
Newton (`nnlift.optim.SaddleFreeNewton` with a full Krylov basis, i.e. the exact |H|); final loss and the most
negative Hessian eigenvalue where each stops. The paper: SFN reaches lower error; Newton stalls near saddles.

Part 3 (their fig. 2): escape from the saddle of f(x, y) = ½c x² − ½y² + ¼y⁴ (a saddle at 0 with curvatures c and
−1, minima f = −¼ at y = ±1), started at (1, 1e-4): gradient descent with step 1/c needs iterations ∝ c, Newton's
method converges to the saddle, SFN escapes in a number of iterations that does not depend on c.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..landscape import HessianOperator, critical_point_index, flatten_params, unflatten
from ..optim import Newton, SaddleFreeNewton
from ._common import fmt, load_digits_split, markdown_table, progress, save_study, spearman, verdict

__all__ = ["CLAIM", "SaddlesConfig", "RegularisedMSE", "find_critical_point", "make_mlp", "run", "save", "report"]

CLAIM = ("Dauphin et al. (2014), 'Identifying and attacking the saddle point problem in high-dimensional non-convex "
         "optimization': the training error of the critical points of a neural network increases with their index "
         "(fraction of negative Hessian eigenvalues), so the low-error critical points are minima and the high-error "
         "ones saddles; Newton's method is attracted to saddles, gradient descent escapes them slowly, and "
         "the saddle-free Newton method, which rescales the gradient by |H|⁻¹, escapes them fast and reaches lower "
         "error from the same start.")


@dataclass
class SaddlesConfig:
    """Part 1: hidden units, rows, weight penalty, seeds, snapshot iterations of the GD trajectory, its step size,
    search budget and tolerance. Part 2: iterations (epochs for SGD), damping and SGD grids. Part 3: curvatures."""

    hidden: int = 6
    n_rows: int = 300
    weight_decay: float = 3e-3
    seeds: int = 10
    snapshots: list[int] = field(default_factory=lambda: [0, 10, 30, 100, 300, 1000, 3000])
    gd_lr: float = 0.5
    max_search: int = 150
    grad_tol: float = 1e-8
    train_steps: int = 150
    newton_damping: list[float] = field(default_factory=lambda: [1e-3, 1e-2, 1e-1, 1.0])
    sgd_lrs: list[float] = field(default_factory=lambda: [0.03, 0.1, 0.3])
    sgd_batch: int = 50
    curvatures: list[float] = field(default_factory=lambda: [1.0, 10.0, 100.0, 1000.0])
    escape_start: float = 1e-4

    @classmethod
    def fast(cls) -> SaddlesConfig:
        return cls(hidden=4, n_rows=150, seeds=2, snapshots=[0, 100, 1000], max_search=80, train_steps=10,
                   newton_damping=[1e-2], sgd_lrs=[0.1], curvatures=[1.0, 100.0])


def make_mlp(n_in: int, hidden: int, n_out: int, seed: int) -> nn.Module:
    """The float64 tanh MLP n_in-hidden-n_out with torch's default initialisation under `torch.manual_seed(seed)`."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, n_out)).double()


class RegularisedMSE:
    """L(θ) = mse(model(X; θ), Y) + (wd/2)‖θ‖² over the flat parameter vector θ: the data term's value, gradient
    and dense Hessian from `nnlift.landscape.HessianOperator`, the penalty's (wd θ, wd I) added."""

    def __init__(self, model: nn.Module, X: torch.Tensor, Y: torch.Tensor, weight_decay: float):
        self.model, self.data, self.weight_decay = model, (X, Y), weight_decay

    def operator(self, theta: torch.Tensor) -> HessianOperator:
        return HessianOperator(self.model, F.mse_loss, self.data, at=theta)

    def gradient(self, theta: torch.Tensor) -> torch.Tensor:
        return self.operator(theta).objective.gradient() + self.weight_decay * theta

    def hessian(self, theta: torch.Tensor) -> torch.Tensor:
        H = self.operator(theta).to_dense()
        return (H + H.T) / 2 + self.weight_decay * torch.eye(len(theta), dtype=H.dtype)

    def data_loss(self, theta: torch.Tensor) -> float:
        return self.operator(theta).objective.loss()

    def predict(self, theta: torch.Tensor) -> torch.Tensor:
        objective = self.operator(theta).objective
        with torch.no_grad():
            return objective.forward(objective.unflatten(theta), self.data[0])


def find_critical_point(objective: RegularisedMSE, theta: torch.Tensor, *, max_iter: int = 150,
                        tol: float = 1e-8) -> dict:
    """Levenberg-Marquardt on ½‖∇L‖²: θ ← θ − (H² + μI)⁻¹H∇L, taken when it lowers ‖∇L‖ (then μ ← μ/10), else
    μ ← 4μ. Ends converged at ‖∇L‖ ≤ tol, stalled when no μ ≤ 1e12 lowers ‖∇L‖, or at max_iter."""
    mu, iterations = 1.0, 0
    g = objective.gradient(theta)
    status = "converged" if float(g.norm()) <= tol else "max_iter"
    while status == "max_iter" and iterations < max_iter:
        iterations += 1
        values, vectors = torch.linalg.eigh(objective.hessian(theta))
        coefficients, norm = vectors.T @ g, float(g.norm())
        while mu <= 1e12:
            trial = theta - vectors @ (values / (values**2 + mu) * coefficients)
            g_trial = objective.gradient(trial)
            if float(g_trial.norm()) < norm:
                theta, g, mu = trial, g_trial, max(mu / 10, 1e-14)
                break
            mu *= 4
        else:
            status = "stalled"
        if float(g.norm()) <= tol:
            status = "converged"
    return {"theta": theta, "status": status, "iterations": iterations, "grad_norm": float(g.norm())}


def _critical_points(config: SaddlesConfig, data: dict, random_state: int, bar, task) -> list[dict]:
    X, labels = data["X_train"][:config.n_rows], data["y_train"][:config.n_rows]
    Y = F.one_hot(labels, 10).double()
    points = []
    for seed in range(config.seeds):
        model = make_mlp(X.shape[1], config.hidden, 10, random_state * 1000 + seed)
        objective = RegularisedMSE(model, X, Y, config.weight_decay)
        optimizer = torch.optim.SGD(model.parameters(), lr=config.gd_lr, weight_decay=config.weight_decay)
        starts = {}
        for it in range(max(config.snapshots) + 1):
            if it in config.snapshots:
                starts[it] = flatten_params(model)
            optimizer.zero_grad()
            F.mse_loss(model(X), Y).backward()
            optimizer.step()
        for it, theta0 in starts.items():
            found = find_critical_point(objective, theta0, max_iter=config.max_search, tol=config.grad_tol)
            theta = found.pop("theta")
            H = objective.hessian(theta)
            index = critical_point_index(H)
            predictions = objective.predict(theta)
            points.append({"seed": seed, "start_iteration": it, **found,
                           "data_loss": objective.data_loss(theta),
                           "train_error": float((predictions.argmax(dim=1) != labels).double().mean()),
                           "index": index.index, "n_negative": int(index.n_negative),
                           "lambda_min": float(torch.linalg.eigvalsh(H)[0]),
                           "theta": theta.tolist()})
            bar.advance(task)
    return points


def _train_from_same_start(config: SaddlesConfig, data: dict, random_state: int, bar, task) -> dict:
    """SGD (momentum 0.9, best lr), damped Newton (best damping) and SFN from one start, on the data loss."""
    X, labels = data["X_train"][:config.n_rows], data["y_train"][:config.n_rows]
    Y = F.one_hot(labels, 10).double()
    start = make_mlp(X.shape[1], config.hidden, 10, random_state * 1000 + 999)
    theta0 = flatten_params(start)
    P = theta0.numel()

    def fresh():  # a copy of the start (vector_to_parameters would alias θ₀, which the optimisers then overwrite)
        model = make_mlp(X.shape[1], config.hidden, 10, 0)
        with torch.no_grad():
            for param, value in zip(model.parameters(), unflatten(theta0, [p.shape for p in model.parameters()]),
                                    strict=True):
                param.copy_(value)
        return model

    def finish(model, curve, seconds, setting):
        op = HessianOperator(model, F.mse_loss, (X, Y))
        with torch.no_grad():
            error = float((model(X).argmax(dim=1) != labels).double().mean())
        return {"setting": setting, "curve": curve, "final_loss": curve[-1], "train_error": error,
                "grad_norm": float(op.objective.gradient().norm()),
                "lambda_min": float(torch.linalg.eigvalsh(op.to_dense())[0]), "seconds": seconds}

    runs = {"sgd": [], "newton": []}
    generator = torch.Generator().manual_seed(random_state)
    for lr in config.sgd_lrs:
        model, began = fresh(), time.perf_counter()
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        with torch.no_grad():
            curve = [float(F.mse_loss(model(X), Y))]
        for _ in range(config.train_steps):
            for rows in torch.randperm(len(X), generator=generator).split(config.sgd_batch):
                optimizer.zero_grad()
                F.mse_loss(model(X[rows]), Y[rows]).backward()
                optimizer.step()
            with torch.no_grad():
                curve.append(float(F.mse_loss(model(X), Y)))
        runs["sgd"].append(finish(model, curve, time.perf_counter() - began, {"lr": lr}))
        bar.advance(task)
    for damping in config.newton_damping:
        model, began = fresh(), time.perf_counter()
        optimizer = Newton(model, F.mse_loss, damping=damping)
        curve = [optimizer.step(lambda: (X, Y)) for _ in range(config.train_steps)]
        with torch.no_grad():
            curve.append(float(F.mse_loss(model(X), Y)))
        runs["newton"].append(finish(model, curve, time.perf_counter() - began, {"damping": damping}))
        bar.advance(task)
    model, began = fresh(), time.perf_counter()
    optimizer = SaddleFreeNewton(model, F.mse_loss, k=P)
    curve = [optimizer.step(lambda: (X, Y)) for _ in range(config.train_steps)]
    with torch.no_grad():
        curve.append(float(F.mse_loss(model(X), Y)))
    best = {name: min(rows, key=lambda r: r["final_loss"] if math.isfinite(r["final_loss"]) else math.inf)
            for name, rows in runs.items()}
    best["sfn"] = finish(model, curve, time.perf_counter() - began, {"Krylov k": P})
    bar.advance(task)
    return {"n_params": P, "best": best,
            "all": {name: [{key: value for key, value in r.items() if key != "curve"} for r in rows]
                    for name, rows in runs.items()}}


class _SaddleFunction(nn.Module):
    """f(x, y) = ½c x² − ½y² + ¼y⁴ as a 'model' whose output is f (the input is ignored)."""

    def __init__(self, curvature: float, start: tuple[float, float]):
        super().__init__()
        self.curvature = curvature
        self.theta = nn.Parameter(torch.tensor(start, dtype=torch.float64))

    def forward(self, X):
        x, y = self.theta
        return (0.5 * self.curvature * x**2 - 0.5 * y**2 + 0.25 * y**4).expand(X.shape[0], 1)


def _escape(config: SaddlesConfig, max_iter: int = 100_000) -> list[dict]:
    """Iterations until f < −1/8 (half-way down from the saddle to the minima) for GD (step 1/c), Newton (no
    damping, no line search: the pure Newton iteration) and SFN (exact |H|), per curvature c."""
    data = (torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64))

    def loss_fn(output, _):
        return output.mean()

    rows = []
    for c in config.curvatures:
        row = {"curvature": c}
        for method in ("gd", "newton", "sfn"):
            model = _SaddleFunction(c, (1.0, config.escape_start))
            if method == "gd":
                optimizer = torch.optim.SGD(model.parameters(), lr=1.0 / c)
            elif method == "newton":
                optimizer = Newton(model, loss_fn, line_search=False)
            else:
                optimizer = SaddleFreeNewton(model, loss_fn, k=2)
            cap = max_iter if method == "gd" else 200
            escaped = None
            for it in range(cap):
                with torch.no_grad():
                    value = float(model(data[0]).mean())
                if value < -0.125:
                    escaped = it
                    break
                if method == "gd":
                    optimizer.zero_grad()
                    model(data[0]).mean().backward()
                    optimizer.step()
                else:
                    optimizer.step(lambda: data)
            with torch.no_grad():
                row[method] = {"iterations": escaped, "final_point": model.theta.tolist(),
                               "final_value": float(model(data[0]).mean())}
        rows.append(row)
    return rows


def run(fast: bool = False, verbose: int = 0, random_state: int = 0) -> dict:
    """Part 1 (critical points: error vs index), part 2 (SGD, Newton, SFN from one start), part 3 (escape)."""
    config = SaddlesConfig.fast() if fast else SaddlesConfig()
    data = load_digits_split(pool=2, random_state=random_state, dtype=torch.float64)
    with progress(verbose) as bar:
        task = bar.add_task("saddles", total=config.seeds * len(config.snapshots) + len(config.sgd_lrs)
                            + len(config.newton_damping) + 1)
        points = _critical_points(config, data, random_state, bar, task)
        training = _train_from_same_start(config, data, random_state, bar, task)
    escape = _escape(config)
    converged = [p for p in points if p["status"] == "converged"]
    summary = {"n_starts": len(points), "n_converged": len(converged),
               "max_grad_norm_converged": max((p["grad_norm"] for p in converged), default=None),
               "spearman_index_error": spearman([p["index"] for p in converged], [p["train_error"] for p in converged]),
               "spearman_index_loss": spearman([p["index"] for p in converged], [p["data_loss"] for p in converged]),
               "n_minima": sum(p["n_negative"] == 0 for p in converged)}
    return {"config": asdict(config), "random_state": random_state,
            "n_params": (16 + 1) * config.hidden + (config.hidden + 1) * 10, "critical_points": points,
            "training": training, "escape": escape, "summary": summary}


def save(result: dict, out_dir) -> list[Path]:
    """saddles.json and saddles.png (error vs index; loss curves from the shared start; escape iterations)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(15, 4.2))
    ax = figure.add_subplot(1, 3, 1)
    points = result["critical_points"]
    for status, style in (("converged", {"marker": "o"}), ("not converged", {"marker": "o", "facecolors": "none"})):
        chosen = [p for p in points if (p["status"] == "converged") == (status == "converged")]
        if chosen:
            ax.scatter([p["index"] for p in chosen], [100 * p["train_error"] for p in chosen], s=25,
                       edgecolors="C0", label=f"{status} ({len(chosen)})", **style)
    ax.set(xlabel="index α (fraction of negative eigenvalues)", ylabel="training error ε (%)",
           title=f"critical points, MLP 16-{result['config']['hidden']}-10")
    ax.legend(fontsize="small")
    ax = figure.add_subplot(1, 3, 2)
    for name, data in result["training"]["best"].items():
        label = f"{name} ({', '.join(f'{k} {v:g}' for k, v in data['setting'].items())})"
        ax.plot(data["curve"], label=label)
    ax.set(yscale="log", xlabel="iteration (epoch for SGD)", ylabel="training loss (MSE)",
           title="from the same start")
    ax.legend(fontsize="small")
    ax = figure.add_subplot(1, 3, 3)
    curvatures = [row["curvature"] for row in result["escape"]]
    for method, marker in (("gd", "o"), ("sfn", "s")):
        ax.plot(curvatures, [row[method]["iterations"] or np.nan for row in result["escape"]], marker=marker,
                label=method)
    ax.set(xscale="log", yscale="log", xlabel="curvature ratio c", ylabel="iterations to escape",
           title="saddle of ½cx² − ½y² + ¼y⁴ (Newton: never)")
    ax.legend(fontsize="small")
    return save_study(result, out_dir, "saddles", figure)


def _steps_to(curve: list[float], target: float) -> str:
    """The first iteration at which the curve is at or below `target`, as text ("never" if it is not)."""
    below = [i for i, value in enumerate(curve) if value <= target]
    return f"iteration {below[0]}" if below else "never"


def report(result: dict) -> str:
    """The claims next to the measured numbers."""
    s, training, escape = result["summary"], result["training"], result["escape"]
    best = training["best"]
    converged = [p for p in result["critical_points"] if p["status"] == "converged"]
    lowest = min(converged, key=lambda p: p["data_loss"]) if converged else None
    newton_escapes = [row["newton"]["iterations"] for row in escape]
    gd, sfn = [row["gd"]["iterations"] for row in escape], [row["sfn"]["iterations"] for row in escape]
    gd_growth = gd[-1] / gd[0] if gd[0] and gd[-1] else float("nan")
    sfn_flat = all(v is not None for v in sfn) and max(sfn) - min(sfn) <= 2
    target = 1.1 * min(r["final_loss"] for r in best.values())
    smallest = min(training["all"]["newton"], key=lambda r: r["setting"]["damping"])
    rows = [
        ["training error increases with the index of the critical point",
         f"{s['n_converged']} of {s['n_starts']} searches converged (‖∇L‖ ≤ {result['config']['grad_tol']:g}); "
         f"Spearman(index, error) = {fmt(s['spearman_index_error'], 2)}, (index, loss) = "
         f"{fmt(s['spearman_index_loss'], 2)}", verdict(s["spearman_index_error"] > 0.5)],
        ["the critical points of lowest error are minima (index 0)",
         (f"{s['n_minima']} minima found; the lowest-loss critical point has index {fmt(lowest['index'], 2)} "
          f"({lowest['n_negative']} negative eigenvalues) and error {fmt(100 * lowest['train_error'], 3)}% (lowest "
          f"error of all: {fmt(100 * min(p['train_error'] for p in converged), 3)}%)") if lowest
         else "no converged point",
         "does not agree" if not lowest or lowest["index"] > 0.02
         else "agrees" if lowest["n_negative"] == 0 else "partly agrees (index ≈ 0)"],
        ["SFN reaches lower error than damped Newton and SGD from the same start",
         "; ".join(f"{name}: loss {fmt(r['final_loss'])} (≤ {fmt(target)}: {_steps_to(r['curve'], target)}), "
                   f"λ_min {fmt(r['lambda_min'], 2)}" for name, r in best.items()),
         verdict(best["sfn"]["final_loss"] < min(best["newton"]["final_loss"], best["sgd"]["final_loss"]))],
        ["Newton stops where the curvature is negative (small damping)",
         f"damping {smallest['setting']['damping']:g}: loss {fmt(smallest['final_loss'])}, ‖∇L‖ "
         f"{fmt(smallest['grad_norm'], 2)}, λ_min {fmt(smallest['lambda_min'], 2)}",
         verdict(smallest["lambda_min"] < 0 and smallest["final_loss"] > best["sfn"]["final_loss"])],
        ["Newton is attracted to the saddle; GD escapes in ∝ c iterations; SFN escapes fast for any c",
         ", ".join(f"c={row['curvature']:g}: GD {row['gd']['iterations']}, SFN {row['sfn']['iterations']}"
                   for row in escape) + f"; Newton escapes: {sum(v is not None for v in newton_escapes)} of "
         f"{len(escape)}", verdict(all(v is None for v in newton_escapes) and sfn_flat and gd_growth > 10)],
    ]
    setting = (f"MLP 16-{result['config']['hidden']}-10 ({result['n_params']} parameters, tanh) on "
               f"{result['config']['n_rows']} rows of digits pooled to 4×4, squared error + "
               f"{result['config']['weight_decay']:g}/2‖θ‖² (part 1), without the penalty (part 2).")
    return "## saddles\n\n" + CLAIM + "\n\n" + setting + "\n\n" + markdown_table(["claim", "measured", "verdict"], rows)
