"""Gradient descent vs classical momentum vs Nesterov's accelerated gradient (Sutskever, Martens, Dahl & Hinton 2013,
"On the importance of initialization and momentum in deep learning", ICML; the seed lecture's slides 12-14).

The updates are the paper's: classical momentum (CM, Polyak's heavy ball) v ← μv − ε∇f(θ), θ ← θ + v;
Nesterov (NAG) v ← μv − ε∇f(θ + μv), θ ← θ + v; μ = 0 gives gradient descent. NAG is run in the look-ahead
variable φ = θ + μv (Bengio, Boulanger-Lewandowski & Pascanu 2013): v ← μv − ε∇f(φ), φ ← φ + μv − ε∇f(φ), so every
method needs one gradient per step at the point it stores; the losses are those at φ.

Part 1, an ill-conditioned quadratic f(x) = ½ xᵀAx with eigenvalues log-spaced in [1/κ, 1], each method with its
textbook parameters: GD ε = 2/(L+μ) (rate (κ−1)/(κ+1)), CM ε = 4/(√L+√μ)², μ = ((√κ−1)/(√κ+1))² (rate
(√κ−1)/(√κ+1)), NAG ε = 1/L, μ = (√κ−1)/(√κ+1) (rate ≈ 1 − 1/√κ). Iterations until ‖x‖ ≤ tol‖x₀‖ are measured and
compared with ln(tol)/ln ρ, ρ the exact spectral radius of each method's linear iteration on A's spectrum; over a
sweep of κ the iterations grow like κ for GD and like √κ with momentum.

Part 2, a tanh autoencoder on the digits (pixels/16, full batch, mean squared reconstruction error), from one
shared initialisation; CM and NAG use the paper's schedule μ_t = min(1 − 2^{−1−log₂(⌊t/250⌋+1)}, μ_max); each
method gets the best learning rate of one shared grid. The reference level is the reconstruction
error of PCA with as many components as the bottleneck (the optimum of a linear autoencoder, Baldi & Hornik 1989).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

from ._common import BatchedMLP, fmt, markdown_table, progress, save_study, verdict

__all__ = ["CLAIM", "ITERATION_FACTOR", "SLOPE_TOL", "MomentumConfig", "momentum_step", "quadratic_parameters",
           "quadratic_verdicts", "spectral_radius", "run", "save", "report"]

CLAIM = ("Sutskever, Martens, Dahl & Hinton (2013), 'On the importance of initialization and momentum in deep "
         "learning': on an ill-conditioned quadratic, momentum methods need O(√κ) iterations where gradient "
         "descent needs O(κ) (Polyak 1964; Nesterov 1983), and with a well-chosen momentum schedule classical momentum "
         "and especially Nesterov's accelerated gradient train deep autoencoders far faster than plain gradient "
         "descent.")

METHODS = ("gd", "cm", "nag")
THEORY_SLOPES = {"gd": 1.0, "cm": 0.5, "nag": 0.5}  # d log(iterations) / d log κ: O(κ) for GD, O(√κ) with momentum
SLOPE_TOL = 0.15  # |measured slope − theory|; ln tol / ln ρ itself has slopes 1.00, 0.50, 0.52 over 10 <= κ <= 1e4
# measured iterations within this factor of ln tol / ln ρ: CM's optimal μ makes a double eigenvalue, so
# ||x_k|| ~ k ρ^k and k ≈ (ln tol − ln k) / ln ρ, up to ×(1 + ln k / ln(1/tol)) ≈ 1.5 at k ~ 10³, tol = 1e-6
ITERATION_FACTOR = 1.5


@dataclass
class MomentumConfig:
    """Quadratic: dimension, the κ of the detailed run, the κ sweep, tolerance. Autoencoder: hidden layer sizes,
    steps, shared learning-rate grid, μ_max of the schedule, rows used."""

    dim: int = 100
    kappa: float = 1e3
    kappas: list[float] = field(default_factory=lambda: [1e1, 1e2, 1e3, 1e4])
    tol: float = 1e-6
    hidden: list[int] = field(default_factory=lambda: [32, 16, 8, 16, 32])
    steps: int = 2000
    lrs: list[float] = field(default_factory=lambda: [0.1, 0.3, 1.0, 3.0])
    mu_max: float = 0.99
    n_rows: int | None = None

    @classmethod
    def fast(cls) -> MomentumConfig:
        return cls(dim=50, kappas=[1e1, 1e2, 1e3], hidden=[16, 8, 16], steps=300, lrs=[0.3, 1.0, 3.0], n_rows=300)


def momentum_step(params, velocities, grads, lr, mu, nesterov) -> None:
    """One step of GD / CM / NAG in place (module docstring); `lr`, `mu` (tensors broadcastable to each parameter,
    one entry per independent run) and the boolean `nesterov` choose the method per run."""
    with torch.no_grad():
        for p, v, g in zip(params, velocities, grads, strict=True):
            v.mul_(mu).sub_(lr * g)
            p.add_(torch.where(nesterov, mu * v - lr * g, v))


def quadratic_parameters(method: str, kappa: float, L: float = 1.0) -> tuple[float, float]:
    """(ε, μ) of the textbook tuning on a quadratic with curvatures in [L/κ, L] (module docstring)."""
    m = L / kappa
    if method == "gd":
        return 2.0 / (L + m), 0.0
    root = math.sqrt(kappa)
    if method == "cm":
        return 4.0 / (math.sqrt(L) + math.sqrt(m)) ** 2, ((root - 1) / (root + 1)) ** 2
    return 1.0 / L, (root - 1) / (root + 1)


def spectral_radius(method: str, lr: float, mu: float, eigenvalues: np.ndarray) -> float:
    """The largest |eigenvalue| of the method's 2×2 iteration on (θ, v) over the curvatures: CM [[1−ελ, μ], [−ελ, μ]],
    NAG [[1−ελ, μ(1−ελ)], [−ελ, μ(1−ελ)]]."""
    radius = 0.0
    for lam in np.asarray(eigenvalues, dtype=float):
        a = 1.0 - lr * lam
        damp = mu * a if method == "nag" else mu
        matrix = np.array([[a, damp], [-lr * lam, damp]])
        radius = max(radius, float(np.abs(np.linalg.eigvals(matrix)).max()))
    return radius


def _quadratic_run(kappa: float, config: MomentumConfig) -> dict:
    """The three methods side by side (one row each) on f(x) = ½ Σ λ_i x_i², x₀ = 1 (every direction excited)."""
    eigenvalues = np.geomspace(1.0 / kappa, 1.0, config.dim)
    settings = [quadratic_parameters(method, kappa) for method in METHODS]
    lam = torch.tensor(eigenvalues, dtype=torch.float64)
    x = torch.ones(len(METHODS), config.dim, dtype=torch.float64)
    velocity = torch.zeros_like(x)
    lr = torch.tensor([s[0] for s in settings], dtype=torch.float64)[:, None]
    mu = torch.tensor([s[1] for s in settings], dtype=torch.float64)[:, None]
    nesterov = torch.tensor([m == "nag" for m in METHODS])[:, None]
    radii = [spectral_radius(m, *s, eigenvalues) for m, s in zip(METHODS, settings, strict=True)]
    cap = int(3 * max(math.log(config.tol) / math.log(r) for r in radii)) + 10
    start, hit = float(x[0].norm()), [None] * len(METHODS)
    for it in range(cap + 1):
        norms = x.norm(dim=1) / start
        for row, value in enumerate(norms.tolist()):
            if hit[row] is None and value <= config.tol:
                hit[row] = it
        if all(h is not None for h in hit):
            break
        momentum_step([x], [velocity], [lam * x], lr, mu, nesterov)
    return {"kappa": kappa, **{m: {"lr": s[0], "mu": s[1], "rho": r, "iterations": h,
                                   "predicted": math.log(config.tol) / math.log(r)}
                               for m, s, r, h in zip(METHODS, settings, radii, hit, strict=True)}}


def _slope(kappas: list[float], values: list[float | None]) -> float:
    """Least-squares slope of log(iterations) against log(κ)."""
    pairs = [(math.log(k), math.log(v)) for k, v in zip(kappas, values, strict=True) if v]
    if len(pairs) < 2:
        return float("nan")
    x, y = np.array(pairs).T
    return float(np.polyfit(x, y, 1)[0])


def _autoencoder(config: MomentumConfig, random_state: int, verbose: int) -> dict:
    """Every (method, learning rate) pair as one member of a batch of identical autoencoders."""
    X = load_digits().data / 16.0
    if config.n_rows is not None:
        X = X[np.random.default_rng(random_state).permutation(len(X))[:config.n_rows]]
    centered = X - X.mean(axis=0)
    bottleneck = min(config.hidden)
    pca_error = float((np.linalg.svd(centered, compute_uv=False) ** 2)[bottleneck:].sum() / X.size)
    X = torch.as_tensor(X, dtype=torch.float32)
    members = [(method, lr) for method in METHODS for lr in config.lrs]
    net = BatchedMLP([64, *config.hidden, 64], 1, "tanh", generator=torch.Generator().manual_seed(random_state))
    params = [p.detach().expand(len(members), *p.shape[1:]).clone().requires_grad_() for p in net.parameters()]
    net.weights, net.biases = params[:len(net.weights)], params[len(net.weights):]
    velocities = [torch.zeros_like(p) for p in params]
    lr = torch.tensor([m[1] for m in members]).view(-1, 1, 1)
    uses_momentum = torch.tensor([m[0] != "gd" for m in members]).view(-1, 1, 1)
    nesterov = torch.tensor([m[0] == "nag" for m in members]).view(-1, 1, 1)
    curves = np.empty((len(members), config.steps + 1))
    with progress(verbose) as bar:
        task = bar.add_task("autoencoder", total=config.steps)
        for t in range(config.steps + 1):
            loss = ((net(X) - X) ** 2).mean(dim=(1, 2))
            curves[:, t] = loss.detach().numpy()
            if t == config.steps:
                break
            grads = torch.autograd.grad(torch.nan_to_num(loss, nan=0.0).sum(), params)
            mu_t = min(1.0 - 2.0 ** (-1.0 - math.log2(t // 250 + 1)), config.mu_max)
            momentum_step(params, velocities, [torch.nan_to_num(g) for g in grads], lr,
                          torch.where(uses_momentum, mu_t, 0.0), nesterov)
            bar.advance(task)
    runs = {}
    for method in METHODS:
        rows = [i for i, m in enumerate(members) if m[0] == method]
        finals = [curves[i, -1] if np.isfinite(curves[i, -1]) else np.inf for i in rows]
        best = rows[int(np.argmin(finals))]
        below = np.nonzero(curves[best] <= pca_error)[0]
        runs[method] = {"best_lr": members[best][1], "final_loss": float(curves[best, -1]),
                        "steps_to_pca_error": int(below[0]) if below.size else None,
                        "final_loss_per_lr": {str(members[i][1]): float(curves[i, -1]) for i in rows},
                        "curve": curves[best, ::max(1, config.steps // 500)].tolist()}
    return {"pca_error": pca_error, "bottleneck": bottleneck, "runs": runs,
            "curve_stride": max(1, config.steps // 500)}


def run(fast: bool = False, verbose: int = 0, random_state: int = 0) -> dict:
    """Part 1 (quadratic at κ and the κ sweep) and part 2 (the autoencoder)."""
    config = MomentumConfig.fast() if fast else MomentumConfig()
    with progress(verbose) as bar:
        task = bar.add_task("quadratic", total=len(config.kappas) + 1)
        detailed = _quadratic_run(config.kappa, config)
        bar.advance(task)
        sweep = []
        for kappa in config.kappas:
            sweep.append(detailed if kappa == config.kappa else _quadratic_run(kappa, config))
            bar.advance(task)
    autoencoder = _autoencoder(config, random_state, verbose)
    slopes = {m: _slope(config.kappas, [row[m]["iterations"] for row in sweep]) for m in METHODS}
    return {"config": asdict(config), "random_state": random_state, "quadratic": detailed, "sweep": sweep,
            "slopes": slopes, "autoencoder": autoencoder}


def _count_ratios(result: dict) -> list[float]:
    """Measured / predicted iterations for every κ of the sweep and every method (inf where the cap was hit)."""
    return [row[m]["iterations"] / row[m]["predicted"] if row[m]["iterations"] else math.inf
            for row in result["sweep"] for m in METHODS]


def quadratic_verdicts(result: dict) -> dict:
    """Part 1 against the theory (Sutskever et al. 2013, Sec. 2; Polyak 1964; Nesterov 1983): `rates`, every
    measured count within ITERATION_FACTOR of ln tol / ln ρ at every κ; `speedup`, GD/CM in [½√κ, 2√κ] and GD/NAG in
    [¼√κ, √κ] at the detailed κ; `slopes`, each log-log slope within SLOPE_TOL of 1 (GD) or ½ (CM, NAG)."""
    q, slopes = result["quadratic"], result["slopes"]
    root = math.sqrt(q["kappa"])
    gd_cm, gd_nag = (q["gd"]["iterations"] / q[m]["iterations"] if q[m]["iterations"] else 0.0 for m in ("cm", "nag"))
    return {"rates": all(1 / ITERATION_FACTOR <= r <= ITERATION_FACTOR for r in _count_ratios(result)),
            "speedup": 0.5 * root <= gd_cm <= 2 * root and 0.25 * root <= gd_nag <= root,
            "slopes": all(abs(slopes[m] - THEORY_SLOPES[m]) <= SLOPE_TOL for m in METHODS)}


def save(result: dict, out_dir) -> list[Path]:
    """momentum.json and momentum.png (iterations vs κ; the autoencoder loss curves)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2))
    ax = figure.add_subplot(1, 2, 1)
    kappas = [row["kappa"] for row in result["sweep"]]
    for method, marker in zip(METHODS, "osd", strict=True):
        line, = ax.plot(kappas, [row[method]["iterations"] for row in result["sweep"]], marker=marker,
                        label=f"{method} (slope {result['slopes'][method]:.2f})")
        ax.plot(kappas, [row[method]["predicted"] for row in result["sweep"]], ":", color=line.get_color())
    ax.set(xscale="log", yscale="log", xlabel="condition number κ",
           ylabel=f"iterations to ‖x‖ ≤ {result['config']['tol']:g}‖x₀‖",
           title="quadratic: measured (solid), ln tol / ln ρ (dotted)")
    ax.legend(fontsize="small")
    ax = figure.add_subplot(1, 2, 2)
    ae = result["autoencoder"]
    for method, run_ in ae["runs"].items():
        steps = np.arange(len(run_["curve"])) * ae["curve_stride"]
        ax.plot(steps, run_["curve"], label=f"{method} (ε = {run_['best_lr']:g})")
    ax.axhline(ae["pca_error"], color="k", ls="--", label=f"PCA, {ae['bottleneck']} components")
    ax.set(yscale="log", xlabel="full-batch step", ylabel="reconstruction MSE",
           title=f"tanh autoencoder on digits (μ_max = {result['config']['mu_max']:g})")
    ax.legend(fontsize="small")
    return save_study(result, out_dir, "momentum", figure)


def report(result: dict) -> str:
    """The claims next to the measured numbers."""
    q, slopes, ae = result["quadratic"], result["slopes"], result["autoencoder"]["runs"]
    root = math.sqrt(q["kappa"])
    ratio_cm = q["gd"]["iterations"] / q["cm"]["iterations"]
    ratio_nag = q["gd"]["iterations"] / q["nag"]["iterations"]
    pca = result["autoencoder"]["pca_error"]

    def speed(method):
        steps = ae[method]["steps_to_pca_error"]
        return f"{method}: final {fmt(ae[method]['final_loss'])}, PCA level at step {steps if steps else '—'}"

    better = ae["cm"]["final_loss"] < ae["gd"]["final_loss"] and ae["nag"]["final_loss"] < ae["gd"]["final_loss"]
    checks = quadratic_verdicts(result)
    ratios = _count_ratios(result)
    rows = [
        [f"quadratic: iterations to ‖x‖ ≤ tol‖x₀‖ are ln tol / ln ρ (ρ: each method's rate) ×/÷ {ITERATION_FACTOR:g}",
         f"measured / predicted in [{min(ratios):.2f}, {max(ratios):.2f}] over {len(result['sweep'])} κ × 3 methods",
         verdict(checks["rates"])],
        [f"quadratic, κ = {q['kappa']:g}: momentum needs ~√κ = {root:.0f}× (CM) and ~√κ/2 (NAG) fewer iterations",
         f"GD {q['gd']['iterations']} (predicted {q['gd']['predicted']:.0f}), CM {q['cm']['iterations']} "
         f"({q['cm']['predicted']:.0f}), NAG {q['nag']['iterations']} ({q['nag']['predicted']:.0f}); GD/CM "
         f"{ratio_cm:.1f} (in [{root / 2:.0f}, {2 * root:.0f}]), GD/NAG {ratio_nag:.1f} (in [{root / 4:.0f}, "
         f"{root:.0f}])", verdict(checks["speedup"])],
        [f"iterations grow like κ (GD) and √κ (momentum): log-log slopes 1, ½, ½ (± {SLOPE_TOL:g})",
         f"GD {slopes['gd']:.2f}, CM {slopes['cm']:.2f}, NAG {slopes['nag']:.2f}", verdict(checks["slopes"])],
        ["deep autoencoder: CM and NAG train faster than GD (best ε each)",
         "; ".join(speed(m) for m in METHODS) + f" (PCA error {fmt(pca)})", verdict(better)],
        ["NAG at least as good as CM", f"NAG {fmt(ae['nag']['final_loss'])} vs CM {fmt(ae['cm']['final_loss'])}",
         verdict(ae["nag"]["final_loss"] <= ae["cm"]["final_loss"])],
    ]
    return "## momentum\n\n" + CLAIM + "\n\n" + markdown_table(["claim", "measured", "verdict"], rows)
