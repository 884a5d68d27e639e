"""Gunasekar, Lee, Soudry & Srebro (2018): L-layer fully connected linear networks tend to the L2 max margin for
every L, L-layer full-width circular convolutional ones to a stationary point of min ||F beta||_{2/L} s.t. margins
>= 1, so they become sparse in the Fourier domain as L grows.

Data: B data sets of n = 6 Gaussian points in d = 12 labelled by a random Gaussian teacher (separable, n < d, so
many separators exist and the biases differ). References by cvxpy: the L2 max margin and, for L = 2 convolutions,
argmin ||F beta||_1. Training: `train_linear_net` (gradient descent on log of the exponential loss with a
depth-scaled step, which follows the gradient flow of the loss), layers from N(0, 0.1^2 / d).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.progress import Progress

from ..bias.linear_nets import (
    direction_distance,
    effective_frequencies,
    fourier_kkt_residual,
    fourier_l1_max_margin,
    fourier_norm,
    fourier_spectrum,
    train_linear_net,
)
from ..bias.references import max_margin
from ._common import save_study

__all__ = ["CLAIM", "KKT_TOL", "run", "save", "report"]

CLAIM = ("On linearly separable data with the exponential loss, the predictor beta(t) of an L-layer linear network "
         "trained by gradient descent converges in direction to argmin ||beta||_2 s.t. y_n <beta, x_n> >= 1 for "
         "fully connected networks of any depth, and to a first-order stationary point of "
         "argmin ||F beta||_{2/L} s.t. y_n <beta, x_n> >= 1 (F the DFT) for L-layer full-width circular "
         "convolutional networks: the L2 max margin for L = 1, the l1 norm of the DFT (convex) for L = 2, "
         "ever sparser spectra for larger L (Gunasekar, Lee, Soudry & Srebro 2018, NeurIPS).")

# Relative KKT residual (`fourier_kkt_residual`: 0 stationary, 1 no multiplier fits) below which conv L >= 3 is
# "stationary": 1e-2 is the first-order accuracy the same GD budget reaches where the limit is known (the fc L = 3
# nets' residual for their L2 problem, reported beside it); the L2 max margin scores >> 1e-2 on the 2/L problem.
KKT_TOL = 1e-2


def _config(fast: bool) -> dict:
    if fast:
        return {"d": 8, "n": 4, "n_datasets": 2, "depths": [1, 2, 3], "n_steps": 600, "step": 4.0,
                "init_scale": 0.1}
    return {"d": 12, "n": 6, "n_datasets": 8, "depths": [1, 2, 3], "n_steps": 20_000, "step": 4.0,
            "init_scale": 0.1}


def _data(cfg: dict, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(random_state)
    X = rng.standard_normal((cfg["n_datasets"], cfg["n"], cfg["d"]))
    teacher = rng.standard_normal((cfg["n_datasets"], cfg["d"]))
    return X, np.sign(np.einsum("bnd,bd->bn", X, teacher))


def _unit_margin(beta: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    margins = y * np.einsum("...nd,...d->...n", X, beta)
    return beta / margins.min(axis=-1, keepdims=True)


def _median(values) -> float:
    return float(np.median(values))


def _kkt(beta: np.ndarray, X: np.ndarray, y: np.ndarray, p: float) -> list[float]:
    """Per data set, the KKT residual of argmin ||F beta||_p s.t. margins >= 1 (Gunasekar et al. 2018's problem)."""
    return [fourier_kkt_residual(b, Xb, yb, p) for b, Xb, yb in zip(beta, X, y, strict=True)]


def run(fast: bool = False, verbose: int = 0, random_state: int = 0) -> dict:
    """FC and conv nets of each depth on every data set; `fast` is a few seconds, the full run ~1.5 minutes."""
    cfg = _config(fast)
    X, y = _data(cfg, random_state)
    l2 = np.array([max_margin(Xb, yb).w for Xb, yb in zip(X, y, strict=True)])
    l1_dft = np.array([fourier_l1_max_margin(Xb, yb) for Xb, yb in zip(X, y, strict=True)])
    l1_optimum = fourier_norm(l1_dft, 1)
    runs = []
    configs = [(arch, depth) for depth in cfg["depths"] for arch in ("fc", "conv")]
    with Progress(disable=not verbose, transient=True) as progress:
        task = progress.add_task("linear networks", total=len(configs))
        for arch, depth in configs:
            path = train_linear_net(X, y, arch, depth, cfg["n_steps"], step=cfg["step"],
                                    init_scale=cfg["init_scale"], random_state=random_state)
            beta = _unit_margin(path.beta[-1], X, y)
            p = 2.0 if arch == "fc" else 2.0 / depth  # the norm each theorem says is minimised (up to stationarity)
            separating = np.all(y * np.einsum("bnd,tbd->tbn", X, path.beta) > 0, axis=(1, 2))
            first = int(np.argmax(separating))  # the path is plotted from the first step that separates every set
            history = _unit_margin(path.beta[first:], X[None], y[None])
            runs.append({
                "architecture": arch, "depth": depth, "p": p, "beta": beta.tolist(),
                "log_loss": path.log_loss[-1].tolist(),
                "distance_to_l2": direction_distance(beta, l2).tolist(),
                "distance_to_l1_dft": direction_distance(beta, l1_dft).tolist(),
                "l1_dft_excess": (fourier_norm(beta, 1) / l1_optimum - 1).tolist(),
                "fourier_p_norm": fourier_norm(beta, p).tolist(),
                "effective_frequencies": effective_frequencies(beta).tolist(),
                "kkt_residual": _kkt(beta, X, y, p),
                "steps": path.steps[first:].tolist(),
                "median_l1_dft_excess_path": np.median(fourier_norm(history, 1) / l1_optimum - 1, axis=1).tolist(),
                "median_distance_to_l2_path": np.median(direction_distance(history, l2), axis=1).tolist(),
            })
            progress.advance(task)
    references = {}
    deep_ps = [2.0 / depth for depth in cfg["depths"] if depth >= 3]
    for name, beta in (("l2_max_margin", _unit_margin(l2, X, y)), ("l1_dft", l1_dft)):
        references[name] = {"beta": beta.tolist(), "effective_frequencies": effective_frequencies(beta).tolist(),
                            "l1_dft_excess": (fourier_norm(beta, 1) / l1_optimum - 1).tolist(),
                            "fourier_p_norm": {str(p): fourier_norm(beta, p).tolist() for p in (2.0, 1.0, 2 / 3)},
                            "kkt_residual": {str(p): _kkt(beta, X, y, p) for p in deep_ps}}
    result = {"claim": CLAIM, "fast": fast, "random_state": random_state, "config": cfg,
              "X": X.tolist(), "y": y.tolist(), "references": references, "runs": runs}
    result["agrees"] = _verdicts(result)
    return result


def _verdicts(result: dict) -> dict:
    """Tolerances, on medians over the data sets (written out in `report`)."""
    out = {}
    fc_spread = {r["depth"]: _median(r["effective_frequencies"]) for r in result["runs"] if r["architecture"] == "fc"}
    for r in result["runs"]:
        name = f"{r['architecture']} L={r['depth']}"
        if r["architecture"] == "fc" or r["depth"] == 1:  # the L2 max-margin direction
            out[name] = _median(r["distance_to_l2"]) < 0.05
        elif r["depth"] == 2:  # the convex l1-DFT minimum, with a spectrum sparser than the fc net's
            out[name] = _median(r["l1_dft_excess"]) < 0.02 and \
                _median(r["effective_frequencies"]) < 0.8 * fc_spread[r["depth"]]
        else:  # a stationary point of the 2/L quasi-norm problem, sparser still
            out[name] = _median(r["kkt_residual"]) < KKT_TOL and \
                _median(r["effective_frequencies"]) < 0.8 * fc_spread[r["depth"]]
    return out


def save(result: dict, out_dir) -> list[Path]:
    """linear_nets.json and linear_nets.png (spectra on data set 0; l1-DFT excess vs steps; spectral spread)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 4.5))
    (ax_spec, ax_path, ax_spread) = fig.subplots(1, 3)
    d = result["config"]["d"]
    freq = np.arange(d)
    curves = [("L2 max margin", result["references"]["l2_max_margin"]["beta"][0], "k", "o"),
              ("min ||F beta||_1 (cvxpy)", result["references"]["l1_dft"]["beta"][0], "0.5", "s")]
    curves += [(f"{r['architecture']} L={r['depth']}", r["beta"][0], f"C{i}", ".")
               for i, r in enumerate(result["runs"]) if r["depth"] > 1]
    for label, beta, color, marker in curves:
        spectrum = fourier_spectrum(beta)
        ax_spec.plot(freq, spectrum / spectrum.sum(), marker=marker, color=color, label=label)
    ax_spec.set(xlabel="frequency k", ylabel="|F beta|_k / ||F beta||_1", title="spectra, data set 0")
    ax_spec.legend(fontsize="small")
    for i, r in enumerate(result["runs"]):
        if r["depth"] > 1:
            ax_path.loglog(r["steps"], np.maximum(r["median_l1_dft_excess_path"], 1e-6), color=f"C{i}",
                           label=f"{r['architecture']} L={r['depth']}")
    ax_path.set(xlabel="step", ylabel="median ||F beta||_1 / min - 1 (unit margin)",
                title="distance from the L = 2 conv limit")
    ax_path.legend(fontsize="small")
    labels = [f"{r['architecture']}\nL={r['depth']}" for r in result["runs"]]
    ax_spread.bar(range(len(labels)), [_median(r["effective_frequencies"]) for r in result["runs"]],
                  color=["C0" if r["architecture"] == "fc" else "C1" for r in result["runs"]])
    for name, style in (("l2_max_margin", "--"), ("l1_dft", ":")):
        ax_spread.axhline(_median(result["references"][name]["effective_frequencies"]), color="k", ls=style,
                          label=name)
    ax_spread.set(xticks=range(len(labels)), xticklabels=labels, ylabel="median (||F beta||_1 / ||F beta||_2)^2",
                  title="effective number of frequencies")
    ax_spread.legend(fontsize="small")
    cfg = result["config"]
    fig.suptitle(f"Linear FC vs circular conv nets: {cfg['n_datasets']} data sets, n={cfg['n']}, d={d}, "
                 f"{cfg['n_steps']:,} steps")
    return save_study(result, out_dir, "linear_nets", fig)


def _count(run: dict) -> str:
    """The "(k/B data sets < KKT_TOL)" note for the runs whose verdict the KKT residual decides (conv, L >= 3)."""
    if run["architecture"] != "conv" or run["depth"] < 3:
        return ""
    return f" ({sum(v < KKT_TOL for v in run['kkt_residual'])}/{len(run['kkt_residual'])} data sets < {KKT_TOL:g})"


def report(result: dict) -> str:
    """The claim and a markdown table of medians over the data sets, with a verdict per network."""
    refs = result["references"]
    lines = [f"**Claim.** {result['claim']}", "",
             "Medians over the data sets, beta rescaled to margin 1; the KKT residual is that of the theorem's "
             "problem.", "",
             "| network | theorem's limit | dist. to L2 max margin | dist. to min ||F beta||_1 "
             "| ||F beta||_1 / min - 1 | ||F beta||_{2/L} | eff. frequencies | KKT residual | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        limit = "L2 max margin" if r["p"] == 2 else f"stationary pt of min ||F beta||_{r['p']:.3g}"
        ok = result["agrees"][f"{r['architecture']} L={r['depth']}"]
        lines.append(f"| {r['architecture']} L={r['depth']} | {limit} | {_median(r['distance_to_l2']):.4f} "
                     f"| {_median(r['distance_to_l1_dft']):.4f} | {_median(r['l1_dft_excess']):.4f} "
                     f"| {_median(r['fourier_p_norm']):.3f} "
                     f"| {_median(r['effective_frequencies']):.2f} | {_median(r['kkt_residual']):.4f}{_count(r)} "
                     f"| {'agrees' if ok else 'does not agree'} |")
    for name, label in (("l2_max_margin", "reference: L2 max margin"), ("l1_dft", "reference: min ||F beta||_1")):
        ref = refs[name]
        norms = ref["fourier_p_norm"]
        kkt = ", ".join(f"p={float(p):.3g}: {_median(v):.4f}" for p, v in ref["kkt_residual"].items())
        lines.append(f"| {label} | | | | {_median(ref['l1_dft_excess']):.4f} "
                     f"| p=1: {_median(norms['1.0']):.3f}, p=2/3: {_median(norms[str(2 / 3)]):.3f} "
                     f"| {_median(ref['effective_frequencies']):.2f} | {kkt} | |")
    lines += ["", "Verdicts: FC nets and L = 1 agree when the median distance to the L2 max-margin direction is "
              "< 0.05; conv L = 2 when ||F beta||_1 is within 2% of the cvxpy minimum and the spectrum spreads over "
              "< 0.8x the effective frequencies of the FC net of the same depth; conv L >= 3 when the KKT residual "
              f"of the 2/L problem on beta's frequency support is < {KKT_TOL:g} (the fc nets' residual for their own "
              "L2 problem shows the stationarity this GD budget reaches; the references' residuals for the 2/L "
              "problem show what a non-stationary point scores) and the spectrum is as sparse. "
              "The convolutional result promises a stationary point, not the global minimum of the non-convex "
              "L >= 3 problem, so ||F beta||_{2/3} may exceed the l1-DFT reference's."]
    return "\n".join(lines)
