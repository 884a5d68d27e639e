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

Part 2: from the same random starts of the same MLP (squared error, no penalty), mini-batch SGD with momentum (best
lr of a grid), damped Newton and saddle-free Newton, both as in the paper's Algorithm 1 (`subspace_newton_step`):
the exact Hessian (Krylov size k = P, the paper's exact small-MLP runs), damping λ chosen at every step from one
grid by the lowest loss, Armijo line search; the two differ only in H vs |H|. Final loss, loss after a tenth of the
steps, and the Hessian's extreme eigenvalues where each stops. An ablation on the first start changes one factor at a
time: fixed damping (the previous default gave Newton the best fixed λ of a grid chosen by final loss), Krylov
size k, and the weight penalty of part 1. The paper: SFN reaches lower error; Newton stalls near saddles.

Part 3 (their fig. 2): escape from the saddle of f(x, y) = ½c x² − ½y² + ¼y⁴ (a saddle at 0 with curvatures c and
−1, minima f = −¼ at y = ±1), started at (1, y₀), until f < −1/8, i.e. |y| > y* = (1 − 1/√2)^½. Near the saddle
gradient descent with step 1/c multiplies y by 1 + 1/c per step and SFN (|H|⁻¹ = diag(1/c, 1)) by 2, so the
predictions are ln(y*/y₀)/ln(1 + 1/c) iterations (∝ c) and ln(y*/y₀)/ln 2 (independent of c); Newton's method
(H⁻¹ = diag(1/c, −1)) sends y to 0 and converges to the saddle. `escape_checks` compares the measured counts with
these predictions; the same run on f with +½y² (a minimum at 0, no saddle) must fail them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..landscape import HessianOperator, critical_point_index, flatten_params
from ..optim import Newton, SaddleFreeNewton
from ..optim.newton import backtracking_line_search, spectral_solve
from ..optim.saddle_free import lanczos_basis
from ._common import fmt, load_digits_split, markdown_table, progress, save_study, spearman, verdict

__all__ = ["CLAIM", "SaddlesConfig", "RegularisedMSE", "compare_starts", "escape_checks", "find_critical_point",
           "make_mlp", "count_saddles", "predicted_escape", "run", "save", "report", "subspace_newton_step"]

CLAIM = ("Dauphin et al. (2014), 'Identifying and attacking the saddle point problem in high-dimensional non-convex "
         "optimization': the training error of the critical points of a neural network increases with their index "
         "(fraction of negative Hessian eigenvalues), so the low-error critical points are minima and the high-error "
         "ones saddles; Newton's method is attracted to saddles, gradient descent escapes them slowly, and "
         "the saddle-free Newton method, which rescales the gradient by |H|⁻¹, escapes them fast and reaches lower "
         "error from the same start.")


@dataclass
class SaddlesConfig:
    """Part 1: hidden units, rows, weight penalty, seeds, snapshot iterations of the GD trajectory, its step size,
    search budget and tolerance. Part 2: steps (epochs for SGD), starts, the per-step damping grid, the early
    fraction of the steps, SGD grid; the ablation's fixed dampings, grid extension below 1e-3, Krylov sizes and
    weight penalties. Part 3: curvatures and y₀."""

    hidden: int = 6
    n_rows: int = 300
    weight_decay: float = 3e-3
    seeds: int = 10
    snapshots: list[int] = field(default_factory=lambda: [0, 10, 30, 100, 300, 1000, 3000])
    gd_lr: float = 0.5
    max_search: int = 150
    grad_tol: float = 1e-8
    train_steps: int = 150
    starts: int = 5
    damping: list[float] = field(default_factory=lambda: [1e-3, 1e-2, 1e-1, 1.0, 10.0])
    early_fraction: float = 0.1
    sgd_lrs: list[float] = field(default_factory=lambda: [0.03, 0.1, 0.3])
    sgd_batch: int = 50
    fixed_damping: list[float] = field(default_factory=lambda: [1e-3, 1e-2, 1e-1])
    low_damping: list[float] = field(default_factory=lambda: [0.0, 1e-5, 1e-4])
    krylov: list[int] = field(default_factory=lambda: [10, 25, 50])
    penalties: list[float] = field(default_factory=lambda: [1e-4, 3e-3])
    curvatures: list[float] = field(default_factory=lambda: [1.0, 10.0, 100.0, 1000.0])
    escape_start: float = 1e-4

    @classmethod
    def fast(cls) -> SaddlesConfig:
        return cls(hidden=4, n_rows=150, seeds=2, snapshots=[0, 100, 1000], max_search=80, train_steps=10, starts=2,
                   sgd_lrs=[0.1], fixed_damping=[1e-2], low_damping=[], krylov=[10], penalties=[3e-3],
                   curvatures=[1.0, 100.0])


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

    def loss(self, theta: torch.Tensor) -> float:
        return self.data_loss(theta) + 0.5 * self.weight_decay * float(theta @ theta)

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


def subspace_newton_step(objective: RegularisedMSE, theta: torch.Tensor, *, k: int, damping: tuple[float, ...],
                         absolute: bool, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
    """One step of Dauphin et al.'s Algorithm 1 (m = 1) on the dense Hessian: V = `lanczos_basis` of H from ∇L
    (V = I when k ≥ P: the exact method), Ĥ = VᵀHV = UΛUᵀ; for each λ in `damping` Δ_λ = −V(U T(Λ) Uᵀ + λI)⁺Vᵀ∇L
    with T = |·| (saddle-free Newton, their eq. 12) or the identity (damped Newton in the same subspace); λ the one
    with the lowest L(θ + Δ_λ) (their λ ← argmin f̂), θ ← θ + tΔ_λ with t the Armijo step from 1.
    Returns the new θ and the step's loss before it, λ, t and λ_min(Ĥ)."""
    g, H, f0 = objective.gradient(theta), objective.hessian(theta), objective.loss(theta)
    if k >= len(theta):
        V, projected = torch.eye(len(theta), dtype=theta.dtype), H
    else:
        V, projected = lanczos_basis(H, g, k, generator=generator)
    values, vectors = torch.linalg.eigh(projected)
    steps = [-V @ spectral_solve(values.abs() if absolute else values, vectors, V.T @ g, lam) for lam in damping]
    trial = np.array([objective.loss(theta + step) for step in steps])
    best = int(np.argmin(np.where(np.isfinite(trial), trial, np.inf)))
    t, _ = backtracking_line_search(lambda t: objective.loss(theta + t * steps[best]), f0, float(g @ steps[best]))
    return theta + t * steps[best], {"loss": f0, "damping": damping[best], "step_size": t,
                                     "lambda_min": float(values[0])}


def _endpoint(objective: RegularisedMSE, theta: torch.Tensor, labels: torch.Tensor, curve: list[float],
              early: int) -> dict:
    """Final and early loss, training error, ‖∇L‖ and the Hessian's extreme eigenvalues at θ."""
    eigenvalues = torch.linalg.eigvalsh(objective.hessian(theta))
    error = float((objective.predict(theta).argmax(dim=1) != labels).double().mean())
    return {"final_loss": curve[-1], "early_loss": curve[early], "data_loss": objective.data_loss(theta),
            "train_error": error, "grad_norm": float(objective.gradient(theta).norm()),
            "lambda_min": float(eigenvalues[0]), "lambda_max": float(eigenvalues[-1])}


def _second_order(objective: RegularisedMSE, theta0: torch.Tensor, labels: torch.Tensor, config: SaddlesConfig, *,
                  k: int, damping: tuple[float, ...], absolute: bool) -> dict:
    """`train_steps` steps of `subspace_newton_step` from θ₀: the loss curve, how often each λ was chosen, on how
    many steps T(Ĥ) + λI was positive definite and how many the line search rejected (t = 0), and the end."""
    generator = torch.Generator().manual_seed(0)
    theta, steps = theta0.clone(), []
    for _ in range(config.train_steps):
        theta, info = subspace_newton_step(objective, theta, k=k, damping=damping, absolute=absolute,
                                           generator=generator)
        steps.append(info)
    curve = [info["loss"] for info in steps] + [objective.loss(theta)]
    chosen = [info["damping"] for info in steps]
    return {"curve": curve, "damping_chosen": {f"{lam:g}": chosen.count(lam) for lam in damping},
            "positive_definite_steps": sum(absolute or info["damping"] + info["lambda_min"] > 0 for info in steps),
            "rejected_steps": sum(info["step_size"] == 0 for info in steps),
            **_endpoint(objective, theta, labels, curve, round(config.early_fraction * config.train_steps))}


def _sgd(objective: RegularisedMSE, theta0: torch.Tensor, labels: torch.Tensor, config: SaddlesConfig,
         generator: torch.Generator) -> dict:
    """Mini-batch SGD with momentum 0.9 from θ₀ for each lr of the grid (epochs = `train_steps`); the best by final
    loss, with the final losses of all."""
    model, (X, Y) = objective.model, objective.data
    runs = []
    for lr in config.sgd_lrs:
        torch.nn.utils.vector_to_parameters(theta0.clone(), model.parameters())
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        curve = [objective.data_loss(theta0)]
        for _ in range(config.train_steps):
            for rows in torch.randperm(len(X), generator=generator).split(config.sgd_batch):
                optimizer.zero_grad()
                F.mse_loss(model(X[rows]), Y[rows]).backward()
                optimizer.step()
            curve.append(objective.data_loss(flatten_params(model)))
        runs.append({"lr": lr, "curve": curve, **_endpoint(objective, flatten_params(model), labels, curve,
                                                           round(config.early_fraction * config.train_steps))})
    best = min(runs, key=lambda r: r["final_loss"] if math.isfinite(r["final_loss"]) else math.inf)
    return {**best, "all_final": {f"{r['lr']:g}": r["final_loss"] for r in runs}}


def _ablation_settings(config: SaddlesConfig, P: int) -> list[dict]:
    """The paper's setting (no penalty, exact |H|, per-step damping grid), then one factor changed at a time."""
    grid = tuple(config.damping)
    paper = {"factor": "paper's setting", "k": P, "damping": grid, "weight_decay": 0.0}
    rows = [paper]
    rows += [{**paper, "factor": "fixed damping", "damping": (lam,)} for lam in config.fixed_damping]
    if config.low_damping:
        rows.append({**paper, "factor": "grid down to 0", "damping": tuple(config.low_damping) + grid})
    rows += [{**paper, "factor": "Krylov size", "k": k} for k in config.krylov if k < P]
    rows += [{**paper, "factor": "weight penalty", "weight_decay": wd} for wd in config.penalties]
    return rows


def _without_curve(run: dict) -> dict:
    return {key: value for key, value in run.items() if key != "curve"}


def _train_from_same_start(config: SaddlesConfig, data: dict, random_state: int, bar, task) -> dict:
    """Part 2: SGD, Newton and SFN in the paper's setting from each of `starts` starts; the ablation on the first."""
    X, labels = data["X_train"][:config.n_rows], data["y_train"][:config.n_rows]
    Y = F.one_hot(labels, 10).double()
    model = make_mlp(X.shape[1], config.hidden, 10, 0)
    P = flatten_params(model).numel()
    generator = torch.Generator().manual_seed(random_state)
    settings = _ablation_settings(config, P)
    starts, ablation = [], []
    for i in range(config.starts):
        seed = random_state * 1000 + 999 - i
        theta0 = flatten_params(make_mlp(X.shape[1], config.hidden, 10, seed))
        chosen = settings if i == 0 else settings[:1]
        for setting in chosen:
            objective = RegularisedMSE(model, X, Y, setting["weight_decay"])
            runs = {name: _second_order(objective, theta0, labels, config, k=setting["k"],
                                        damping=setting["damping"], absolute=name == "sfn")
                    for name in ("newton", "sfn")}
            if setting is settings[0]:
                runs["sgd"] = _sgd(RegularisedMSE(model, X, Y, 0.0), theta0, labels, config, generator)
                starts.append({"seed": seed, **runs})
            if i == 0:
                ablation.append({**setting, **{name: _without_curve(runs[name]) for name in ("newton", "sfn")}})
            bar.advance(task)
    return {"n_params": P, "starts": starts, "ablation": ablation}


def compare_starts(sfn: list[float], newton: list[float], sgd: list[float]) -> dict:
    """On how many starts SFN's value is below Newton's, below SGD's, below both; agrees when below both on more
    than half (the paper's claim for final error, Dauphin et al. 2014 §7, fig. 4)."""
    below_newton = sum(s < n for s, n in zip(sfn, newton, strict=True))
    below_sgd = sum(s < g for s, g in zip(sfn, sgd, strict=True))
    below_both = sum(s < min(n, g) for s, n, g in zip(sfn, newton, sgd, strict=True))
    return {"n": len(sfn), "below_newton": below_newton, "below_sgd": below_sgd, "below_both": below_both,
            "agrees": 2 * below_both > len(sfn)}


def count_saddles(lambda_min: list[float], lambda_max: list[float], relative: float = 1e-3) -> dict:
    """How many end points have negative curvature beyond rounding and flat directions, λ_min < −`relative`·λ_max
    (a saddle); for Newton's, agrees with 'Newton is attracted to saddles' (Dauphin et al. 2014, §4) when more than
    half do."""
    saddles = sum(lo < -relative * hi for lo, hi in zip(lambda_min, lambda_max, strict=True))
    return {"n": len(lambda_min), "at_saddle": saddles, "agrees": 2 * saddles > len(lambda_min)}


def escape_threshold() -> float:
    """y* with f(0, y*) = −1/8: y*⁴ − 2y*² + ½ = 0, y*² = 1 − 1/√2."""
    return math.sqrt(1 - 1 / math.sqrt(2))


def predicted_escape(curvature: float, start: float) -> dict:
    """Iterations from y₀ to y*: GD (step 1/c) grows y by 1 + 1/c per step, SFN (|H|⁻¹ = diag(1/c, 1)) by 2
    (Dauphin et al. 2014, §4, fig. 2)."""
    distance = math.log(escape_threshold() / start)
    return {"gd": distance / math.log1p(1 / curvature), "sfn": distance / math.log(2)}


def escape_checks(rows: list[dict], start: float, tolerance: float = 0.25) -> dict:
    """The measured escape iterations against `predicted_escape` (each within a factor 1 + `tolerance`, so SFN's
    count may not grow with c while GD's must grow ∝ c), and Newton: never below −1/8, end point within 1e-6 of
    the origin, and that point a saddle (a negative Hessian eigenvalue)."""
    def ratio(measured, predicted):
        return None if measured is None else measured / predicted

    def close(r):
        return r is not None and 1 / (1 + tolerance) <= r <= 1 + tolerance

    out = {"gd_ratio": [], "sfn_ratio": [], "newton_distance": [], "newton_lambda_min": []}
    for row in rows:
        predicted = predicted_escape(row["curvature"], start)
        out["gd_ratio"].append(ratio(row["gd"]["iterations"], predicted["gd"]))
        out["sfn_ratio"].append(ratio(row["sfn"]["iterations"], predicted["sfn"]))
        out["newton_distance"].append(float(np.hypot(*row["newton"]["final_point"])))
        out["newton_lambda_min"].append(row["newton"]["lambda_min"])
    out["gd_agrees"] = all(close(r) for r in out["gd_ratio"])
    out["sfn_agrees"] = all(close(r) for r in out["sfn_ratio"])
    out["newton_agrees"] = (all(row["newton"]["iterations"] is None for row in rows)
                            and all(d <= 1e-6 for d in out["newton_distance"])
                            and all(v < 0 for v in out["newton_lambda_min"]))
    out["agrees"] = out["gd_agrees"] and out["sfn_agrees"] and out["newton_agrees"]
    return out


class _SaddleFunction(nn.Module):
    """f(x, y) = ½c x² + ½s y² + ¼y⁴ as a 'model' whose output is f (the input is ignored); s = −1 gives the saddle
    of Dauphin et al.'s fig. 2, s = +1 a minimum at 0 (no saddle)."""

    def __init__(self, curvature: float, start: tuple[float, float], sign: float = -1.0):
        super().__init__()
        self.curvature, self.sign = curvature, sign
        self.theta = nn.Parameter(torch.tensor(start, dtype=torch.float64))

    def value(self, theta: torch.Tensor) -> torch.Tensor:
        x, y = theta
        return 0.5 * self.curvature * x**2 + 0.5 * self.sign * y**2 + 0.25 * y**4

    def forward(self, X):
        return self.value(self.theta).expand(X.shape[0], 1)


def _escape(config: SaddlesConfig, sign: float = -1.0) -> list[dict]:
    """Iterations until f < −1/8 for GD (step 1/c), Newton (no damping, no line search: the pure Newton iteration)
    and SFN (`SaddleFreeNewton`, exact |H|), per curvature c; each capped at 4× its prediction + 10 (Newton: 200).
    Newton's end point and the smallest Hessian eigenvalue there are kept."""
    data = (torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64))

    def loss_fn(output, _):
        return output.mean()

    rows = []
    for c in config.curvatures:
        row, predicted = {"curvature": c}, predicted_escape(c, config.escape_start)
        for method in ("gd", "newton", "sfn"):
            model = _SaddleFunction(c, (1.0, config.escape_start), sign)
            if method == "gd":
                optimizer = torch.optim.SGD(model.parameters(), lr=1.0 / c)
            elif method == "newton":
                optimizer = Newton(model, loss_fn, line_search=False)
            else:
                optimizer = SaddleFreeNewton(model, loss_fn, k=2)
            cap = 200 if method == "newton" else math.ceil(4 * predicted[method]) + 10
            escaped = None
            for it in range(cap):
                if float(model.value(model.theta.detach())) < -0.125:
                    escaped = it
                    break
                if method == "gd":
                    optimizer.zero_grad()
                    model(data[0]).mean().backward()
                    optimizer.step()
                else:
                    optimizer.step(lambda: data)
            point = model.theta.detach()
            row[method] = {"iterations": escaped, "final_point": point.tolist(),
                           "final_value": float(model.value(point)),
                           "lambda_min": float(torch.linalg.eigvalsh(torch.autograd.functional.hessian(model.value,
                                                                                                       point))[0])}
        rows.append(row)
    return rows


def _summary(points: list[dict], training: dict, escape: list[dict], config: SaddlesConfig) -> dict:
    """Part 1's correlations and counts, part 2's comparisons over starts, part 3's checks."""
    converged = [p for p in points if p["status"] == "converged"]
    starts = training["starts"]
    fixed = [row for row in training["ablation"] if row["factor"] == "fixed damping"]
    old = min(fixed, key=lambda row: row["newton"]["final_loss"]) if fixed else None
    return {"n_starts": len(points), "n_converged": len(converged),
            "max_grad_norm_converged": max((p["grad_norm"] for p in converged), default=None),
            "spearman_index_error": spearman([p["index"] for p in converged], [p["train_error"] for p in converged]),
            "spearman_index_loss": spearman([p["index"] for p in converged], [p["data_loss"] for p in converged]),
            "n_minima": sum(p["n_negative"] == 0 for p in converged),
            "final": compare_starts(*([s[name]["final_loss"] for s in starts] for name in ("sfn", "newton", "sgd"))),
            "early": compare_starts(*([s[name]["early_loss"] for s in starts] for name in ("sfn", "newton", "sgd"))),
            **{f"{name}_saddles": count_saddles([s[name]["lambda_min"] for s in starts],
                                                [s[name]["lambda_max"] for s in starts]) for name in ("newton", "sfn")},
            "old_setting": old and {"newton_damping": old["damping"][0], "newton_final": old["newton"]["final_loss"],
                                    "sfn_final": starts[0]["sfn"]["final_loss"]},
            "escape": escape_checks(escape, config.escape_start)}


def run(fast: bool = False, verbose: int = 0, random_state: int = 0) -> dict:
    """Part 1 (critical points: error vs index), part 2 (SGD, Newton, SFN from the same starts; ablation), part 3
    (escape from a constructed saddle)."""
    config = SaddlesConfig.fast() if fast else SaddlesConfig()
    data = load_digits_split(pool=2, random_state=random_state, dtype=torch.float64)
    n_settings = len(_ablation_settings(config, (16 + 1) * config.hidden + (config.hidden + 1) * 10))
    with progress(verbose) as bar:
        task = bar.add_task("saddles", total=config.seeds * len(config.snapshots) + n_settings + config.starts - 1)
        points = _critical_points(config, data, random_state, bar, task)
        training = _train_from_same_start(config, data, random_state, bar, task)
    escape = _escape(config)
    return {"config": asdict(config), "random_state": random_state, "n_params": training["n_params"],
            "critical_points": points, "training": training, "escape": escape,
            "summary": _summary(points, training, escape, config)}


def save(result: dict, out_dir) -> list[Path]:
    """saddles.json and saddles.png (error vs index; loss curves from the first start; escape iterations against
    the predictions)."""
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
    first = result["training"]["starts"][0]
    for name in ("sgd", "newton", "sfn"):
        label = f"sgd (lr {first['sgd']['lr']:g})" if name == "sgd" else f"{name} (λ per step)"
        ax.plot(first[name]["curve"], label=label)
    ax.set(yscale="log", xlabel="iteration (epoch for SGD)", ylabel="training loss (MSE)",
           title="from the same start (first of the starts)")
    ax.legend(fontsize="small")
    ax = figure.add_subplot(1, 3, 3)
    curvatures = [row["curvature"] for row in result["escape"]]
    start = result["config"]["escape_start"]
    for i, (method, marker) in enumerate((("gd", "o"), ("sfn", "s"))):
        ax.plot(curvatures, [row[method]["iterations"] or np.nan for row in result["escape"]], marker=marker,
                ls="none", color=f"C{i}", label=f"{method} measured")
        ax.plot(curvatures, [predicted_escape(c, start)[method] for c in curvatures], color=f"C{i}", ls="--",
                label=f"{method} predicted")
    ax.set(xscale="log", yscale="log", xlabel="curvature ratio c", ylabel="iterations to escape",
           title="saddle of ½cx² − ½y² + ¼y⁴ (Newton: never)")
    ax.legend(fontsize="small")
    return save_study(result, out_dir, "saddles", figure)


def _ablation_table(result: dict) -> str:
    """SFN vs Newton on the first start by damping, Krylov size and weight penalty."""
    P, steps = result["n_params"], result["config"]["train_steps"]
    early = round(result["config"]["early_fraction"] * steps)
    rows = []
    for row in result["training"]["ablation"]:
        n, s = row["newton"], row["sfn"]
        damping = "per step from {" + ", ".join(f"{v:g}" for v in row["damping"]) + "}" if len(row["damping"]) > 1 \
            else f"fixed {row['damping'][0]:g}"
        rows.append([row["factor"], f"{'P' if row['k'] >= P else row['k']}", damping, f"{row['weight_decay']:g}",
                     f"{fmt(n['final_loss'], 4)} / {fmt(s['final_loss'], 4)}",
                     f"{fmt(n['early_loss'], 4)} / {fmt(s['early_loss'], 4)}",
                     f"{fmt(n['lambda_min'], 2)} / {fmt(s['lambda_min'], 2)}",
                     f"{fmt(n['grad_norm'], 2)} / {fmt(s['grad_norm'], 2)}",
                     "tie" if math.isclose(s["final_loss"], n["final_loss"], rel_tol=1e-4)
                     else "SFN" if s["final_loss"] < n["final_loss"] else "Newton"])
    return ("SFN vs Newton by damping / Krylov size / weight penalty (first start; Newton / SFN; loss includes the "
            f"penalty; early = after {early} of {steps} steps; P = {P}):\n\n"
            + markdown_table(["factor", "k", "damping λ", "penalty", "final loss", "early loss", "λ_min at end",
                              "‖∇L‖ at end", "lower final"], rows))


def _explanation(result: dict) -> str:
    """Why SFN does or does not reach a lower loss than Newton here, from the ablation and the starts."""
    s, ablation, starts = result["summary"], result["training"]["ablation"], result["training"]["starts"]
    lower = {row["factor"]: [] for row in ablation}
    for row in ablation:
        lower[row["factor"]].append(row["sfn"]["final_loss"] < row["newton"]["final_loss"])
    always = [factor for factor, wins in lower.items() if all(wins)]
    early = sum(row["sfn"]["early_loss"] < row["newton"]["early_loss"] for row in ablation)
    newton = [st["newton"] for st in starts]
    pd_steps, n_steps = sum(r["positive_definite_steps"] for r in newton), sum(len(r["curve"]) - 1 for r in newton)
    parts = [f"On the first start SFN's final loss is below Newton's in {sum(map(sum, lower.values()))} of "
             f"{len(ablation)} settings; factors with SFN below in every row: {', '.join(always) or 'none'}. "
             f"Over {s['final']['n']} starts in the paper's setting SFN ends below Newton on "
             f"{s['final']['below_newton']}. SFN's loss after a tenth of the steps is below Newton's in {early} of "
             f"{len(ablation)} settings and on {s['early']['below_newton']} of {s['early']['n']} starts."]
    krylov = [row for row in ablation if row["factor"] == "Krylov size"]
    if krylov:
        parts.append(f"In the Krylov rows Newton works in the same k-dimensional subspace; SFN's lowest final loss "
                     f"there, {fmt(min(r['sfn']['final_loss'] for r in krylov), 4)}, against exact Newton's "
                     f"{fmt(ablation[0]['newton']['final_loss'], 4)}.")
    stuck = [row for row in ablation
             if 2 * row["newton"]["rejected_steps"] > sum(row["newton"]["damping_chosen"].values())]
    parts += [f"Newton at {row['factor']} {', '.join(f'{v:g}' for v in row['damping'])} had "
              f"{row['newton']['rejected_steps']} of {sum(row['newton']['damping_chosen'].values())} steps rejected "
              "by the line search (H + λI indefinite, the step no descent): it stays at the start." for row in stuck]
    if s["newton_saddles"]["agrees"]:
        parts.append(f"Newton ends at negative curvature on {s['newton_saddles']['at_saddle']} of "
                     f"{s['newton_saddles']['n']} starts, as the paper says.")
    else:
        parts.append(
            f"Newton is not stopped at saddles here: on {s['newton_saddles']['n'] - s['newton_saddles']['at_saddle']}"
            f" of {s['newton_saddles']['n']} starts it ends with λ_min ≥ −10⁻³·λ_max (lowest λ_min/λ_max "
            f"{fmt(min(r['lambda_min'] / r['lambda_max'] for r in newton), 2)}, ‖∇L‖ ≤ "
            f"{fmt(max(r['grad_norm'] for r in newton), 2)}): no negative curvature where it stops; the λ chosen by "
            f"the lowest loss made H + λI positive definite on {pd_steps} of its {n_steps} steps.")
        if not s["sfn_saddles"]["at_saddle"]:
            parts.append("SFN's end points have no negative curvature either, so the final losses say which basin "
                         "each method reached, not which escaped a saddle.")
    old = s["old_setting"]
    if old:
        parts.append(f"The previous default gave Newton the best fixed λ of a grid, picked by final loss (λ = "
                     f"{old['newton_damping']:g}: Newton {fmt(old['newton_final'], 4)} vs SFN "
                     f"{fmt(old['sfn_final'], 4)}); here λ is chosen per step for both, as in the paper.")
    return " ".join(parts)


def report(result: dict) -> str:
    """The claims next to the measured numbers, the ablation table and the explanation."""
    s, escape, config = result["summary"], result["escape"], result["config"]
    starts = result["training"]["starts"]
    converged = [p for p in result["critical_points"] if p["status"] == "converged"]
    lowest = min(converged, key=lambda p: p["data_loss"]) if converged else None
    checks = s["escape"]

    def medians(key):
        return ", ".join(f"{name} {fmt(float(np.median([st[name][key] for st in starts])), 4)}"
                         for name in ("sfn", "newton", "sgd"))

    rows = [
        ["training error increases with the index of the critical point",
         f"{s['n_converged']} of {s['n_starts']} searches converged (‖∇L‖ ≤ {config['grad_tol']:g}); "
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
         f"paper's setting (exact |H|, λ per step, no penalty), {s['final']['n']} starts × {config['train_steps']} "
         f"steps: SFN below Newton on {s['final']['below_newton']}, below SGD on {s['final']['below_sgd']}, below "
         f"both on {s['final']['below_both']}; median final loss {medians('final_loss')}",
         verdict(s["final"]["agrees"])],
        ["SFN descends faster than Newton and SGD (loss early in training)",
         f"loss after {round(config['early_fraction'] * config['train_steps'])} steps: SFN below Newton on "
         f"{s['early']['below_newton']}, below SGD on {s['early']['below_sgd']}, below both on "
         f"{s['early']['below_both']} of {s['early']['n']} starts; median {medians('early_loss')}",
         verdict(s["early"]["agrees"])],
        ["Newton is attracted to saddles: it stops where the curvature is negative",
         f"Newton's end points with λ_min < −10⁻³·λ_max: {s['newton_saddles']['at_saddle']} of "
         f"{s['newton_saddles']['n']} (λ_min " + ", ".join(fmt(st["newton"]["lambda_min"], 2) for st in starts)
         + "; ‖∇L‖ " + ", ".join(fmt(st["newton"]["grad_norm"], 2) for st in starts) + ")",
         verdict(s["newton_saddles"]["agrees"])],
        ["constructed saddle: GD escapes in ln(y*/y₀)/ln(1+1/c) ∝ c iterations, SFN in ln(y*/y₀)/ln 2 for any c, "
         "Newton converges to the saddle",
         "; ".join(f"c={row['curvature']:g}: GD {row['gd']['iterations']} "
                   f"(pred. {predicted_escape(row['curvature'], config['escape_start'])['gd']:.0f}), SFN "
                   f"{row['sfn']['iterations']} (pred. "
                   f"{predicted_escape(row['curvature'], config['escape_start'])['sfn']:.1f})" for row in escape)
         + "; Newton: escapes " + f"{sum(row['newton']['iterations'] is not None for row in escape)} of {len(escape)}"
         + f", distance to the saddle ≤ {fmt(max(checks['newton_distance']), 2)}, λ_min there "
         + f"{fmt(max(checks['newton_lambda_min']), 2)}",
         verdict(checks["agrees"])],
    ]
    setting = (f"MLP 16-{config['hidden']}-10 ({result['n_params']} parameters, tanh) on {config['n_rows']} rows of "
               f"digits pooled to 4×4, squared error + {config['weight_decay']:g}/2‖θ‖² (part 1), without the "
               "penalty (part 2: Newton and SFN as in Algorithm 1 with the exact Hessian, λ chosen each step from {"
               + ", ".join(f"{v:g}" for v in config["damping"]) + "} by the lowest loss, Armijo line search; SGD "
               "with momentum 0.9, best lr of {" + ", ".join(f"{v:g}" for v in config["sgd_lrs"]) + "}).")
    table = markdown_table(["claim", "measured", "verdict"], rows)
    return "\n\n".join(["## saddles", CLAIM, setting, table, _ablation_table(result), _explanation(result)])
