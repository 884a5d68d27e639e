"""Where backprop gets stuck: the fraction of random starts that end in a spurious local minimum.

Part 1, the seed's example (Anandkumar's slides, "Example of failure of backpropagation ... exponential (in
dimensions) number of local optima", after Auer, Herbster & Warmuth 1996, "Exponentially many local minima for
single neurons", NeurIPS). One sigmoid neuron σ(wᵀx) without bias, squared loss, on data placed on the coordinate
axes: for every axis i the points x = 10 e_i (target 0.99) and x = −e_i (target σ(2)). The loss separates,
L(w) = Σ_i ℓ(w_i), and ℓ has a global minimum near w = 0.4 and a worse local one near w = −2, so L has 2^d local
minima of which one is global. Gradient descent from w ~ N(0, I) fails unless every coordinate starts on the
global side of ℓ's barrier w_b, so the failure rate is 1 − p^d with p = P(N(0,1) > w_b) = Φ(−w_b), computed from ℓ
alone and compared with the measured rate.

Part 2, the ReLU teacher of shared/FINDINGS.md: y = Σ_j relu(a_jᵀx), A with orthonormal columns, k = d, x ~ N(0, I),
no noise; students relu(xᵀW + b)c + c₀ of width m (LeCun-normal start, as nnlift's `random_init`) trained by
full-batch Adam (lr 5e-3, constant) on n rows. Relative test error = mean (f(x) − y)² / Var(y) on fresh rows.
A run fails when that error ends above `threshold`: a student that found the teacher drives it towards 0 (the
over-parameterised ones more slowly, as the extra units must cancel), while the spurious minima leave a finite
part of some teacher unit unexplained (one whole unit is 1/k of the variance); the threshold sits in the gap
between the two groups, and the fractions at 10× either side are reported too. The width sweep asks whether
over-parameterisation helps (Safran & Shamir 2018 find spurious minima of exactly-parameterised ReLU students,
fewer with a few extra units); the k sweep at m = k asks how failure grows with the number of units.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import expit
from scipy.stats import norm

from ._common import BatchedMLP, fmt, markdown_table, progress, save_study, verdict

__all__ = ["CLAIM", "BackpropFailureConfig", "neuron_loss_1d", "relative_test_error", "run", "save", "report"]

CLAIM = ("Backpropagation can get stuck in spurious local optima: a single sigmoid neuron with the squared loss has "
         "exponentially many (in the dimension) local minima (Auer, Herbster & Warmuth 1996; Anandkumar's slides, "
         "Janzamin, Sedghi & Anandkumar 2015), and ReLU students of a ReLU teacher have spurious minima that random "
         "starts fall into, less often when the student is over-parameterised (Safran & Shamir 2018).")

# Part 1's one-dimensional data: (input, target) pairs per axis.
_AXIS_POINTS = ((10.0, 0.99), (-1.0, float(expit(2.0))))


@dataclass
class BackpropFailureConfig:
    """Part 1: dimensions, starts per dimension, GD steps and rate. Part 2: d = k for the width sweep, student
    widths, the k sweep (at m = k), seeds, rows, Adam steps and rate, failure threshold."""

    neuron_dims: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    neuron_starts: int = 400
    neuron_steps: int = 2000
    neuron_lr: float = 0.5
    k: int = 9
    widths: list[int] = field(default_factory=lambda: [9, 12, 18, 27])
    k_sweep: list[int] = field(default_factory=lambda: [4, 6, 9])
    seeds: int = 24
    n_train: int = 2000
    n_test: int = 10_000
    steps: int = 6000
    lr: float = 5e-3
    threshold: float = 3e-3

    @classmethod
    def fast(cls) -> BackpropFailureConfig:
        return cls(neuron_dims=[1, 4, 8], neuron_starts=200, neuron_steps=1000, k=6, widths=[6, 12], k_sweep=[6],
                   seeds=8, n_train=1000, n_test=2000, steps=1500)


def neuron_loss_1d(w: np.ndarray) -> np.ndarray:
    """ℓ(w) = Σ_points (σ(w x) − y)² on one axis (part 1); the d-dimensional loss is Σ_i ℓ(w_i)."""
    w = np.asarray(w, dtype=float)
    return sum((expit(w * x) - y) ** 2 for x, y in _AXIS_POINTS)


def _neuron_landscape() -> dict:
    """ℓ's two minima, the barrier between them and the global basin's probability p = Φ(−w_b) under N(0, 1)."""
    local = minimize_scalar(neuron_loss_1d, bounds=(-4.0, -1.0), method="bounded", options={"xatol": 1e-10}).x
    best = minimize_scalar(neuron_loss_1d, bounds=(-0.5, 2.0), method="bounded", options={"xatol": 1e-10}).x
    barrier = minimize_scalar(lambda w: -neuron_loss_1d(w), bounds=(local, best), method="bounded",
                              options={"xatol": 1e-10}).x
    grid = neuron_loss_1d(np.linspace(-10.0, 10.0, 20_001))
    if np.sum((grid[1:-1] < grid[:-2]) & (grid[1:-1] < grid[2:])) != 2:
        raise RuntimeError("the axis data must give ℓ exactly two local minima")
    return {"global_min": float(best), "global_loss": float(neuron_loss_1d(best)), "local_min": float(local),
            "local_loss": float(neuron_loss_1d(local)), "barrier": float(barrier),
            "p_global_basin": float(norm.sf(barrier))}


def _neuron_failure(d: int, landscape: dict, config: BackpropFailureConfig, rng: np.random.Generator) -> dict:
    """Full-batch GD on the 2d axis points from `neuron_starts` N(0, I) starts at once (one row per start)."""
    W = torch.as_tensor(rng.standard_normal((config.neuron_starts, d)), dtype=torch.float64)
    for _ in range(config.neuron_steps):
        grad = sum(2 * (torch.sigmoid(W * x) - y) * torch.sigmoid(W * x) * (1 - torch.sigmoid(W * x)) * x
                   for x, y in _AXIS_POINTS)
        W -= config.neuron_lr * grad
    loss = neuron_loss_1d(W.numpy()).sum(axis=1)
    excess = loss - d * landscape["global_loss"]
    failed = excess > 0.5 * (landscape["local_loss"] - landscape["global_loss"])
    bad_coordinates = (W.numpy() < landscape["barrier"]).sum(axis=1)
    return {"d": d, "failure_rate": float(failed.mean()),
            "predicted": 1.0 - landscape["p_global_basin"] ** d,
            "n_local_minima": 2**d, "mean_bad_coordinates": float(bad_coordinates.mean()),
            "max_gradient": float(grad.abs().max())}


def relative_test_error(predictions: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """mean (f(x) − y)² / Var(y) per network: predictions (S, n, 1), y (n, 1)."""
    return (((predictions - y) ** 2).mean(dim=(1, 2)) / y.var()).detach().numpy().astype(float)


def _relu_students(k: int, m: int, config: BackpropFailureConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Relative test errors of `seeds` students of width m on one k = d teacher (same data for all seeds), and the
    relative decrease of each one's training loss over the last quarter of the steps."""
    generator = torch.Generator().manual_seed(seed)
    A = torch.linalg.qr(torch.randn(k, k, generator=generator, dtype=torch.float64))[0].float()
    X = torch.randn(config.n_train, k, generator=generator)
    X_test = torch.randn(config.n_test, k, generator=generator)
    y, y_test = torch.relu(X @ A).sum(dim=1, keepdim=True), torch.relu(X_test @ A).sum(dim=1, keepdim=True)
    net = BatchedMLP([k, m, 1], config.seeds, "relu", generator=generator, gain=1.0)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    for step in range(config.steps + 1):
        losses = ((net(X) - y) ** 2).mean(dim=(1, 2))
        if step == (3 * config.steps) // 4:
            late = losses.detach().clone()
        if step == config.steps:
            break
        optimizer.zero_grad()
        losses.sum().backward()
        optimizer.step()
    with torch.no_grad():
        decrease = ((late - losses) / losses).numpy().astype(float)
        return relative_test_error(net(X_test), y_test), decrease


def _students_row(k: int, m: int, config: BackpropFailureConfig, seed: int) -> dict:
    errors, decrease = _relu_students(k, m, config, seed)
    failed = errors > config.threshold
    return {"k": k, "width": m, "errors": errors.tolist(), "late_relative_decrease": decrease.tolist(),
            "failure_rate": float(failed.mean()),
            "failed_still_improving": int(np.sum(failed & (decrease > 0.1))),
            "failure_rate_threshold_x10": float((errors > 10 * config.threshold).mean()),
            "failure_rate_threshold_div10": float((errors > config.threshold / 10).mean()),
            "median_error_success": float(np.median(errors[errors <= config.threshold]))
            if (errors <= config.threshold).any() else None,
            "min_error_failure": float(errors[errors > config.threshold].min())
            if (errors > config.threshold).any() else None}


def run(fast: bool = False, verbose: int = 0, random_state: int = 0) -> dict:
    """Part 1: failure rate of the single neuron vs d against 1 − p^d; part 2: failure rate of ReLU students vs
    width (k = d fixed) and vs k (m = k)."""
    config = BackpropFailureConfig.fast() if fast else BackpropFailureConfig()
    rng = np.random.default_rng(random_state)
    landscape = _neuron_landscape()
    pairs = [(config.k, m) for m in config.widths] + [(k, k) for k in config.k_sweep if (k, k) != (config.k, config.k)]
    with progress(verbose) as bar:
        task = bar.add_task("backprop failure", total=len(config.neuron_dims) + len(pairs))
        neuron = []
        for d in config.neuron_dims:
            neuron.append(_neuron_failure(d, landscape, config, rng))
            bar.advance(task)
        students = {}
        for k, m in pairs:
            students[(k, m)] = _students_row(k, m, config, random_state * 1000 + k)
            bar.advance(task)
    width_sweep = [students[(config.k, m)] for m in config.widths]
    k_sweep = [students[(k, k)] for k in config.k_sweep]
    return {"config": asdict(config), "random_state": random_state, "neuron_landscape": landscape,
            "neuron": neuron, "width_sweep": width_sweep, "k_sweep": k_sweep}


def save(result: dict, out_dir) -> list[Path]:
    """backprop_failure.json and .png (single neuron: ℓ and failure vs d; ReLU students: errors per width)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(15, 4.2))
    ax = figure.add_subplot(1, 3, 1)
    grid = np.linspace(-4, 2, 400)
    ax.plot(grid, neuron_loss_1d(grid))
    land = result["neuron_landscape"]
    ax.axvline(land["barrier"], color="k", ls=":", label=f"barrier w_b = {land['barrier']:.2f}")
    ax.set(xlabel="w_i", ylabel="ℓ(w_i)", title="single sigmoid neuron, loss along one axis")
    ax.legend(fontsize="small")
    ax = figure.add_subplot(1, 3, 2)
    dims = [row["d"] for row in result["neuron"]]
    ax.plot(dims, [row["failure_rate"] for row in result["neuron"]], "o-", label="measured (GD)")
    ax.plot(dims, [row["predicted"] for row in result["neuron"]], "k--", label="1 − p^d")
    ax.set(xscale="log", xlabel="dimension d (2^d local minima)", ylabel="fraction of starts stuck",
           title="single neuron: failure vs dimension", ylim=(0, 1.02))
    ax.set_xticks(dims, [str(d) for d in dims])
    ax.legend(fontsize="small")
    ax = figure.add_subplot(1, 3, 3)
    rows = result["width_sweep"] + [r for r in result["k_sweep"] if r not in result["width_sweep"]]
    rng = np.random.default_rng(0)
    for position, row in enumerate(rows):
        errors = np.maximum(row["errors"], 1e-12)
        ax.scatter(position + 0.15 * rng.standard_normal(len(errors)), errors, s=12)
    ax.axhline(result["config"]["threshold"], color="k", ls="--", label="failure threshold")
    ax.set_xticks(range(len(rows)), [f"k={r['k']}\nm={r['width']}\n{r['failure_rate']:.0%}" for r in rows])
    ax.set(yscale="log", ylabel="relative test error", title="ReLU teacher (k = d): students of width m")
    ax.legend(fontsize="small")
    return save_study(result, out_dir, "backprop_failure", figure)


def report(result: dict) -> str:
    """The claims next to the measured numbers."""
    neuron, widths, ks = result["neuron"], result["width_sweep"], result["k_sweep"]
    land, threshold = result["neuron_landscape"], result["config"]["threshold"]
    gap = max(abs(row["failure_rate"] - row["predicted"]) for row in neuron)
    starts = result["config"]["neuron_starts"]
    tolerance = 3 * math.sqrt(0.25 / starts)

    def rates(rows, key):
        return ", ".join(f"m={r[key]}: {r['failure_rate']:.0%} (÷10: {r['failure_rate_threshold_div10']:.0%}, "
                         f"×10: {r['failure_rate_threshold_x10']:.0%})" for r in rows)

    exact = widths[0]
    k_rates = [r["failure_rate"] for r in ks]
    growth = ("agrees" if len(ks) > 1 and all(a < b for a, b in zip(k_rates, k_rates[1:], strict=False))
              else "partly agrees" if len(ks) > 1 and k_rates[-1] > k_rates[0] else "does not agree")
    table = markdown_table(["claim", "measured", "verdict"], [
        ["single sigmoid neuron: 2^d local minima, random starts fail with probability 1 − p^d",
         f"p = {land['p_global_basin']:.3f} (barrier at w = {land['barrier']:.2f}); " + ", ".join(
             f"d={r['d']}: {r['failure_rate']:.0%} vs {r['predicted']:.0%}" for r in neuron),
         verdict(gap <= tolerance and neuron[-1]["failure_rate"] > neuron[0]["failure_rate"])],
        [f"ReLU teacher k = d = {exact['k']}: random starts of an exact-width student get stuck",
         f"{exact['failure_rate']:.0%} of {len(exact['errors'])} stuck (relative test error > {threshold:g})",
         verdict(exact["failure_rate"] > 0)],
        ["over-parameterisation helps (failure falls with the width m)",
         rates(widths, "width"), verdict(widths[-1]["failure_rate"] < widths[0]["failure_rate"])],
        ["failure grows with k (m = k)",
         ", ".join(f"k={r['k']}: {r['failure_rate']:.0%}" for r in ks), growth],
    ])
    unique = list({(r["k"], r["width"]): r for r in widths + ks}.values())
    closest = [r["min_error_failure"] for r in unique if r["min_error_failure"] is not None]
    worst_ok = [r["median_error_success"] for r in unique if r["median_error_success"] is not None]
    failed = sum(round(r["failure_rate"] * len(r["errors"])) for r in unique)
    improving = sum(r["failed_still_improving"] for r in unique)
    note = (f"Threshold {threshold:g}: the smallest error of a failed run is {fmt(min(closest)) if closest else '—'}, "
            f"the median error of the successful runs {fmt(max(worst_ok)) if worst_ok else '—'} (worst width); "
            f"{improving} of {failed} failed runs still lowered their training loss by more than 10% over the last "
            f"quarter of the steps (the others had stopped).")
    return f"## backprop-failure\n\n{CLAIM}\n\n{table}\n\n{note}"
