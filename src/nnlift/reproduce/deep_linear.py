"""Deep linear networks: the closed-form mode dynamics and the learning time vs depth (Saxe, McClelland & Ganguli
2014, "Exact solutions to the nonlinear dynamics of learning in deep linear neural networks", ICLR).

Part 1, one hidden layer. With whitened inputs (Σ11 = I) and Σ31 = E[y xᵀ] = U S Vᵀ, gradient descent with learning
rate λ on L = ½ E‖y − W32 W21 x‖² is, for small λ, the flow τ dW21/dt = W32ᵀ(Σ31 − W32 W21), τ dW32/dt =
(Σ31 − W32 W21) W21ᵀ with τ = 1/λ and t the iteration count. From the decoupled, balanced start W21 = R diag(√u₀) Vᵀ,
W32 = U diag(√u₀) Rᵀ (R orthogonal) every mode strength u_α = u_αᵀ W32 W21 v_α follows the sigmoid
u(t) = s e^{2st/τ} / (e^{2st/τ} − 1 + s/u₀), i.e. t = τ/(2s) ln[u_f(s − u₀) / (u₀(s − u_f))]. It is measured here by
projecting the trained product on the singular vectors, from that start and from a small random one (for which
u₀ is not defined: it is fitted per mode from the half-learning time, and the rest of the curve is compared).

Part 2, depth. The same square task learned by products of D weight matrices, started from random orthogonal
matrices (the end-to-end map is an isometry: "dynamical isometry") or from scaled Gaussian ones (entries N(0, 1/N),
norm-preserving on average); each depth and start gets the best learning rate of a geometric grid (so that no depth is
slowed by a step size that suits another), and the learning time is the number of iterations until the loss is
below `criterion` times its value at W = 0. The paper: orthogonal starts learn in a depth-independent time, scaled
Gaussian ones slow down with depth.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ._common import batched_learning_time, fmt, markdown_table, progress, save_study, verdict

__all__ = ["CLAIM", "DeepLinearConfig", "closed_form_strength", "run", "save", "report"]

CLAIM = ("Saxe, McClelland & Ganguli (2014), 'Exact solutions to the nonlinear dynamics of learning in deep linear "
         "neural networks': with whitened inputs and a small decoupled start, each singular mode s of the "
         "input-output correlation is learned along u(t) = s e^{2st/τ}/(e^{2st/τ} − 1 + s/u₀) (τ = 1/learning "
         "rate), in time τ/(2s) ln[u_f(s − u₀)/(u₀(s − u_f))] ∝ 1/s; deep linear nets started from random orthogonal "
         "weights learn in a depth-independent time, from scaled Gaussian weights in a time that grows with depth.")


@dataclass
class DeepLinearConfig:
    """Part 1: mode singular values, layer sizes, learning rate, initial strength u₀, random start scale.
    Part 2: square width, depths, learning-rate grid, seeds, iteration cap, loss criterion."""

    singular_values: list[float] = field(default_factory=lambda: [3.0, 2.0, 1.0, 0.5, 0.25])
    n_in: int = 8
    n_out: int = 6
    lr: float = 0.002
    u0: float = 1e-3
    random_scale: float = 0.03
    final_fraction: float = 0.99
    width: int = 16
    depths: list[int] = field(default_factory=lambda: [2, 4, 8, 16, 32, 64])
    lrs: list[float] = field(default_factory=lambda: np.geomspace(1e-3, 1.0, 19).tolist())
    depth_seeds: int = 3
    max_iter: int = 2000
    criterion: float = 1e-2

    @classmethod
    def fast(cls) -> DeepLinearConfig:
        return cls(singular_values=[2.0, 1.0, 0.5], n_in=4, n_out=4, lr=0.002, depths=[4, 16],
                   lrs=np.geomspace(3e-3, 0.3, 5).tolist(), depth_seeds=1, max_iter=400)


def closed_form_strength(t: np.ndarray, s: float, u0: float, tau: float) -> np.ndarray:
    """u(t) = s e^{2st/τ} / (e^{2st/τ} − 1 + s/u₀), written as s / (1 + (s/u₀ − 1) e^{−2st/τ}) to avoid overflow."""
    return s / (1.0 + (s / u0 - 1.0) * np.exp(-2.0 * s * np.asarray(t, dtype=float) / tau))


def _closed_form_time(u: float, s: float, u0: float, tau: float) -> float:
    """t(u) = τ/(2s) ln[u(s − u₀) / (u₀(s − u))], the inverse of `closed_form_strength`."""
    return tau / (2 * s) * math.log(u * (s - u0) / (u0 * (s - u)))


def _mode_task(config: DeepLinearConfig, rng: np.random.Generator):
    """Whitened inputs X (XᵀX/n = I), targets Y = X Σ31ᵀ with Σ31 = U diag(s) Vᵀ, and U, V (columns)."""
    r = len(config.singular_values)
    if r > min(config.n_in, config.n_out):
        raise ValueError(f"{r} modes need n_in and n_out >= {r}")
    U = np.linalg.qr(rng.standard_normal((config.n_out, r)))[0]
    V = np.linalg.qr(rng.standard_normal((config.n_in, r)))[0]
    n = 2 * config.n_in
    X = math.sqrt(n) * np.linalg.qr(rng.standard_normal((n, config.n_in)))[0]
    sigma31 = U * np.asarray(config.singular_values) @ V.T
    return torch.from_numpy(X), torch.from_numpy(X @ sigma31.T), U, V


def _mode_trajectories(config: DeepLinearConfig, start: str, rng: np.random.Generator) -> dict:
    """Full-batch gradient descent on the one-hidden-layer linear net; u_α(t) at every iteration."""
    s = np.asarray(config.singular_values)
    r, tau = len(s), 1.0 / config.lr
    X, Y, U, V = _mode_task(config, rng)
    if start == "decoupled":
        R = np.linalg.qr(rng.standard_normal((r, r)))[0]
        W21 = R * math.sqrt(config.u0) @ V.T
        W32 = U * math.sqrt(config.u0) @ R.T
    else:
        W21 = config.random_scale * rng.standard_normal((r, config.n_in))
        W32 = config.random_scale * rng.standard_normal((config.n_out, r))
    W21, W32 = (torch.from_numpy(W).requires_grad_() for W in (W21, W32))
    u_f = config.final_fraction * s
    slowest = max(_closed_form_time(u_f[a], s[a], config.u0, tau) for a in range(r))
    n_iter = int(math.ceil((1.25 if start == "decoupled" else 4.0) * slowest))
    Ut, Vt = torch.from_numpy(U), torch.from_numpy(V)
    strengths = []
    for it in range(n_iter + 1):
        with torch.no_grad():
            strengths.append(torch.diagonal(Ut.T @ W32 @ W21 @ Vt).numpy())
        if it == n_iter or (start == "random" and it * 4 >= n_iter and (strengths[-1] >= u_f).all()):
            break
        loss = 0.5 * ((Y - X @ W21.T @ W32.T) ** 2).sum(dim=1).mean()
        g21, g32 = torch.autograd.grad(loss, (W21, W32))
        with torch.no_grad():
            W21 -= config.lr * g21
            W32 -= config.lr * g32
    strengths = np.array(strengths)
    t = np.arange(len(strengths), dtype=float)
    modes = []
    for a in range(r):
        measured = strengths[:, a]
        reached = measured >= s[a] / 2
        half = int(np.argmax(reached)) if reached.any() else None
        if start == "decoupled":
            u0 = config.u0
        elif half is not None:  # fit u₀ so that the closed form reaches s/2 at the measured half-time
            u0 = s[a] / (1.0 + math.exp(2 * s[a] * half / tau))
        else:
            u0 = float("nan")
        error = (float(np.max(np.abs(measured - closed_form_strength(t, s[a], u0, tau))) / s[a])
                 if half is not None else None)
        modes.append({"s": float(s[a]), "u0": float(u0), "measured_u0": float(measured[0]), "half_time": half,
                      "predicted_half_time": _closed_form_time(s[a] / 2, s[a], u0, tau) if half is not None else None,
                      "max_abs_error_over_s": error, "final_strength_over_s": float(measured[-1] / s[a])})
    stride = max(1, n_iter // 400)
    return {"tau": tau, "iterations": t[::stride].tolist(), "strengths": strengths[::stride].T.tolist(),
            "modes": modes}


def _initial_weights(kind: str, depth: int, batch: int, width: int, generator: torch.Generator) -> list[torch.Tensor]:
    weights = []
    for _ in range(depth):
        A = torch.randn(batch, width, width, generator=generator, dtype=torch.float64)
        if kind == "orthogonal":  # Haar-distributed: QR of a Gaussian matrix with the signs of diag(R) fixed
            Q, R = torch.linalg.qr(A)
            weights.append(Q * torch.sign(torch.diagonal(R, dim1=1, dim2=2)).unsqueeze(1))
        else:
            weights.append(A / math.sqrt(width))
    return [W.requires_grad_() for W in weights]


def _learning_time(kind: str, depth: int, M: torch.Tensor, config: DeepLinearConfig, seed: int) -> dict:
    """Iterations to criterion for every (learning rate, seed) at once (one batched product per layer), by
    `batched_learning_time`."""
    n_lr, n_seed = len(config.lrs), config.depth_seeds
    generator = torch.Generator().manual_seed(seed)
    weights = _initial_weights(kind, depth, n_lr * n_seed, config.width, generator)
    lr = torch.tensor(np.repeat(config.lrs, n_seed), dtype=torch.float64).view(-1, 1, 1)

    def loss(weights):
        product = weights[0]
        for W in weights[1:]:
            product = W @ product
        return 0.5 * ((product - M) ** 2).sum(dim=(1, 2))

    found = batched_learning_time(weights, loss, lr, config.criterion * 0.5 * float((M**2).sum()), n_lr,
                                  config.max_iter, blow_up=1e8)
    return {"depth": depth, "iterations": found["iterations"], "censored": found["censored"],
            "best_lr": float(config.lrs[found["best"]])}


def run(fast: bool = False, verbose: int = 0, random_state: int = 0) -> dict:
    """Part 1: u_α(t) vs the closed form from the decoupled and the small random start; part 2: learning time vs
    depth for orthogonal and scaled Gaussian starts."""
    config = DeepLinearConfig.fast() if fast else DeepLinearConfig()
    rng = np.random.default_rng(random_state)
    modes = {}
    with progress(verbose) as bar:
        task = bar.add_task("deep linear", total=2 + 2 * len(config.depths))
        for start in ("decoupled", "random"):
            modes[start] = _mode_trajectories(config, start, rng)
            bar.advance(task)
        s = np.linspace(3.0, 0.2, config.width)
        U = np.linalg.qr(rng.standard_normal((config.width, config.width)))[0]
        V = np.linalg.qr(rng.standard_normal((config.width, config.width)))[0]
        M = torch.from_numpy(U * s @ V.T)
        depth = {}
        for kind in ("orthogonal", "gaussian"):
            rows = []
            for D in config.depths:
                rows.append(_learning_time(kind, D, M, config, random_state * 1000 + D))
                bar.advance(task)
            depth[kind] = rows
    return {"config": asdict(config), "random_state": random_state, "modes": modes, "depth": depth,
            "summary": _summary(modes, depth)}


def _growth(rows: list[dict]) -> float:
    """Learning time at the largest depth over that at the smallest depth above 2 (the shallowest deep net)."""
    deep = [r for r in rows if r["depth"] > 2] or rows
    return deep[-1]["iterations"] / max(deep[0]["iterations"], 1.0)


def _summary(modes: dict, depth: dict) -> dict:
    decoupled, random = modes["decoupled"]["modes"], modes["random"]["modes"]

    def worst(rows):  # a mode that never reached s/2 has no fitted curve: it counts as a total miss
        return max(1.0 if m["max_abs_error_over_s"] is None else m["max_abs_error_over_s"] for m in rows)

    return {"decoupled_max_error_over_s": worst(decoupled), "random_max_error_over_s": worst(random),
            "random_modes_not_learned": sum(m["half_time"] is None for m in random),
            "decoupled_half_time_ratio": [m["half_time"] / m["predicted_half_time"] if m["half_time"] is not None
                                          else float("nan") for m in decoupled],
            "orthogonal_growth": _growth(depth["orthogonal"]), "gaussian_growth": _growth(depth["gaussian"]),
            "gaussian_censored_at_max_depth": depth["gaussian"][-1]["censored"]}


def save(result: dict, out_dir) -> list[Path]:
    """deep_linear.json and deep_linear.png (mode strengths vs the closed form; learning time vs depth)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(15, 4.2))
    for position, start in enumerate(("decoupled", "random"), start=1):
        ax = figure.add_subplot(1, 3, position)
        data = result["modes"][start]
        t = np.asarray(data["iterations"])
        for mode, strengths in zip(data["modes"], data["strengths"], strict=True):
            line, = ax.plot(t, strengths, lw=2, alpha=0.6, label=f"s = {mode['s']:g}")
            if math.isfinite(mode["u0"]):
                ax.plot(t, closed_form_strength(t, mode["s"], mode["u0"], data["tau"]), "--", color=line.get_color())
        ax.set(xlabel=f"iteration t (τ = 1/λ = {data['tau']:g})", ylabel="mode strength u_α",
               title=f"{start} start: measured (solid), closed form (dashed)")
        ax.legend(fontsize="small")
    ax = figure.add_subplot(1, 3, 3)
    for kind, marker in (("orthogonal", "o"), ("gaussian", "s")):
        rows = result["depth"][kind]
        ax.plot([r["depth"] for r in rows], [r["iterations"] for r in rows], marker=marker, label=kind)
        censored = [r for r in rows if r["censored"]]
        if censored:
            ax.plot([r["depth"] for r in censored], [r["iterations"] for r in censored], "kx", ms=10,
                    label="not reached (cap)")
    ax.set(xscale="log", yscale="log", xlabel="depth (weight matrices)", ylabel="iterations to criterion (best lr)",
           title="learning time vs depth")
    depths = [r["depth"] for r in result["depth"]["orthogonal"]]
    ax.set_xticks(depths, [str(D) for D in depths])
    ax.minorticks_off()
    ax.legend(fontsize="small")
    return save_study(result, out_dir, "deep_linear", figure)


def report(result: dict) -> str:
    """The claims next to the measured numbers. Depth-independence counts as met when the orthogonal learning time
    grows by less than 1.5× (about one step of the learning-rate grid) over the depths, as partly met when it grows
    at least 4× less than the Gaussian one."""
    summary, config = result["summary"], result["config"]
    orth, gauss = result["depth"]["orthogonal"], result["depth"]["gaussian"]
    span = [r["depth"] for r in orth if r["depth"] > 2] or [r["depth"] for r in orth]

    def times(rows):
        return ", ".join(f"D={r['depth']}: {'>' if r['censored'] else ''}{r['iterations']:.0f}" for r in rows)

    ratios = ", ".join(fmt(value, 4) for value in summary["decoupled_half_time_ratio"])
    growth_o, growth_g = summary["orthogonal_growth"], summary["gaussian_growth"]
    flat = "agrees" if growth_o < 1.5 else "partly agrees" if 4 * growth_o < growth_g else "does not agree"
    rows = [
        ["u_α(t) follows the closed-form sigmoid (decoupled small start)",
         f"max error / s = {fmt(summary['decoupled_max_error_over_s'])} (λ = {config['lr']:g}); half-time "
         f"measured / closed form: {ratios}", verdict(summary["decoupled_max_error_over_s"] < 0.05)],
        ["the same from a small random start (u₀ fitted per mode from the half-time)",
         f"max error / s = {fmt(summary['random_max_error_over_s'])}; modes not learned: "
         f"{summary['random_modes_not_learned']}",
         verdict(summary["random_max_error_over_s"] < 0.1)],
        ["orthogonal start: depth-independent learning time",
         f"iterations {times(orth)}; ×{growth_o:.2g} from D={span[0]} to D={span[-1]}", flat],
        ["scaled Gaussian start: learning time grows with depth",
         f"iterations {times(gauss)}; ×{'>' if summary['gaussian_censored_at_max_depth'] else ''}{growth_g:.2g} "
         f"from D={span[0]} to D={span[-1]}", verdict(growth_g > 4 * max(growth_o, 1.0))],
    ]
    return "## deep-linear\n\n" + CLAIM + "\n\n" + markdown_table(["claim", "measured", "verdict"], rows)
