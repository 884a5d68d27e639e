"""Wilson, Roelofs, Stern, Srebro & Recht (2017), Sec. 3.3: on a constructed separable least-squares problem,
GD, SGD and heavy ball reach the minimum-norm solution and classify every new point correctly, while AdaGrad,
RMSProp and Adam reach w proportional to sign(X^T y) and label every new point +1.

For each training size n and label probability p, `n_seeds` problems (`bias.adaptive.wilson_problem`, n_test fresh
test points each) are fitted from w = 0 by the six methods of `bias.adaptive.METHODS` (torch.optim, fixed steps)
and compared with the closed-form minimum-norm solution X^T (X X^T)^-1 y.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.progress import Progress

from ..bias.adaptive import METHODS, fit_least_squares, lemma_holds, wilson_problem
from ._common import save_study

__all__ = ["CLAIM", "run", "save", "report"]

CLAIM = ("On the Sec. 3.3 construction (x_i1 = y_i, x_i2 = x_i3 = 1, one feature of its own for y_i = +1 and five "
         "for y_i = -1; P(y = +1) = p > 1/2) with the least-squares loss ||X w - y||^2, gradient descent, SGD and "
         "heavy ball started at 0 converge to the minimum-norm solution and reach 0 test error, while AdaGrad, "
         "RMSProp and Adam converge to w proportional to sign(X^T y) (Lemma 3.1), which classifies every new point "
         "as +1: test error = the fraction of -1 labels, close to 1/2 as p -> 1/2 (Wilson, Roelofs, Stern, "
         "Srebro & Recht 2017, NeurIPS).")

ADAPTIVE = ("adagrad", "rmsprop", "adam")
LEARNING_RATES = {"gd": 0.25, "sgd": 0.1, "heavy_ball": 0.025, "adagrad": 0.1, "rmsprop": 1e-3, "adam": 1e-2}


def _config(fast: bool) -> dict:
    if fast:
        return {"ns": [30], "ps": [0.75], "n_seeds": 4, "n_test": 200, "n_steps": 1_500}
    return {"ns": [50, 200], "ps": [0.55, 0.75, 0.9], "n_seeds": 50, "n_test": 1_000, "n_steps": 5_000}


def _test_error(w: np.ndarray, problem) -> float:
    # the test points' own features (columns >= d) were never seen, so their weights are still 0
    return float(np.mean(np.sign(problem.X_test[:, :w.size] @ w) != problem.y_test))


def _setting(n: int, p: float, cfg: dict, random_state: int) -> dict:
    problems = [wilson_problem(n, p, cfg["n_test"], random_state + seed) for seed in range(cfg["n_seeds"])]
    X, y = np.stack([q.X for q in problems]), np.stack([q.y for q in problems])
    holds = np.array([lemma_holds(q.X, q.y) for q in problems])
    min_norm = np.stack([np.linalg.lstsq(q.X, q.y, rcond=None)[0] for q in problems])
    signs = np.sign(np.einsum("snd,sn->sd", X, y))
    negatives = np.array([np.mean(q.y_test < 0) for q in problems])
    methods = {"min_norm (closed form)": min_norm}
    for method in METHODS:
        methods[method] = fit_least_squares(X, y, method, LEARNING_RATES[method], cfg["n_steps"],
                                            random_state=random_state)
    rows = {}
    for name, w in methods.items():
        errors = np.array([_test_error(wi, q) for wi, q in zip(w, problems, strict=True)])
        cosine = np.sum(w * signs, axis=1) / (np.linalg.norm(w, axis=1) * np.linalg.norm(signs, axis=1))
        rows[name] = {
            "test_error": errors.tolist(), "mean_test_error": float(errors.mean()),
            "mean_test_error_lemma_holds": float(errors[holds].mean()) if holds.any() else None,
            "max_train_loss": float(np.max(np.mean((np.einsum("snd,sd->sn", X, w) - y) ** 2, axis=1))),
            "median_distance_to_min_norm": float(np.median(np.linalg.norm(w - min_norm, axis=1)
                                                           / np.linalg.norm(min_norm, axis=1))),
            "median_cosine_to_sign": float(np.median(cosine)),
        }
    return {"n": n, "p": p, "lemma_holds": holds.tolist(), "fraction_lemma_holds": float(holds.mean()),
            "test_negative_fraction": negatives.tolist(), "mean_test_negative_fraction": float(negatives.mean()),
            "methods": rows}


def _verdicts(result: dict) -> dict:
    out = {}
    for s in result["settings"]:
        for name, row in s["methods"].items():
            if name in ADAPTIVE:  # test error = fraction of -1 test labels, seed by seed, within 0.01 on average
                gap = np.mean(np.abs(np.array(row["test_error"]) - np.array(s["test_negative_fraction"])))
                ok = gap < 0.01 and row["mean_test_error"] > 0
            else:  # the minimum-norm solution with 0 test error on every seed
                ok = max(row["test_error"]) == 0 and row["median_distance_to_min_norm"] < 1e-3
            out[f"n={s['n']} p={s['p']} {name}"] = bool(ok)
    return out


def run(fast: bool = False, verbose: int = 0, random_state: int = 0) -> dict:
    """Every (n, p) setting over `n_seeds` problems; `fast` is a few seconds, the full run about a minute."""
    cfg = _config(fast)
    settings = []
    grid = [(n, p) for n in cfg["ns"] for p in cfg["ps"]]
    with Progress(disable=not verbose, transient=True) as progress:
        task = progress.add_task("adaptive vs gradient methods", total=len(grid))
        for n, p in grid:
            settings.append(_setting(n, p, cfg, random_state))
            progress.advance(task)
    result = {"claim": CLAIM, "fast": fast, "random_state": random_state, "config": cfg,
              "learning_rates": LEARNING_RATES, "settings": settings}
    result["agrees"] = _verdicts(result)
    return result


def save(result: dict, out_dir) -> list[Path]:
    """adaptive_generalization.json and .png (mean test error per method and setting; dashes: -1 label fraction)."""
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    settings = result["settings"]
    names = list(settings[0]["methods"])
    fig = Figure(figsize=(max(6.0, 2.2 * len(settings)), 4.5))
    ax = fig.subplots()
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        means = [s["methods"][name]["mean_test_error"] for s in settings]
        spread = [np.std(s["methods"][name]["test_error"]) for s in settings]
        ax.bar(np.arange(len(settings)) + (k - (len(names) - 1) / 2) * width, means, width, yerr=spread,
               label=name, color=f"C{k}")
    for i, s in enumerate(settings):
        ax.hlines(s["mean_test_negative_fraction"], i - 0.45, i + 0.45, colors="k", linestyles="--",
                  label="fraction of -1 test labels" if i == 0 else None)
    ax.set(xticks=range(len(settings)), xticklabels=[f"n={s['n']}, p={s['p']}" for s in settings],
           ylabel="test error (mean over seeds, bar: sd)",
           title=f"Wilson et al. (2017) Sec. 3.3, {result['config']['n_seeds']} seeds per setting")
    ax.legend(fontsize="small", ncol=2)
    return save_study(result, out_dir, "adaptive_generalization", fig)


def report(result: dict) -> str:
    """The claim and a markdown table per setting and method, with a verdict each."""
    cfg = result["config"]
    lines = [f"**Claim.** {result['claim']}", "",
             f"{cfg['n_seeds']} seeds per setting, {cfg['n_test']} test points each, {cfg['n_steps']:,} steps from "
             f"w = 0; learning rates {result['learning_rates']}.", "",
             "| n | p | Lemma 3.1 holds | -1 test labels | method | test error (mean) | max train loss "
             "| dist. to min-norm | cos(w, sign(X^T y)) | verdict |", "|---|---|---|---|---|---|---|---|---|---|"]
    for s in result["settings"]:
        for name, row in s["methods"].items():
            key = f"n={s['n']} p={s['p']} {name}"
            verdict = ("agrees" if result["agrees"][key] else "does not agree") if key in result["agrees"] else ""
            lines.append(f"| {s['n']} | {s['p']} | {s['fraction_lemma_holds']:.0%} "
                         f"| {s['mean_test_negative_fraction']:.3f} | {name} | {row['mean_test_error']:.3f} "
                         f"| {row['max_train_loss']:.1e} | {row['median_distance_to_min_norm']:.1e} "
                         f"| {row['median_cosine_to_sign']:.4f} | {verdict} |")
    lines += ["", "Verdicts: GD, SGD and heavy ball agree when every seed has 0 test error and the median distance to "
              "the closed-form minimum-norm solution is < 1e-3; AdaGrad, RMSProp and Adam agree when their test "
              "error matches each seed's fraction of -1 test labels within 0.01 on average. Lemma 3.1 needs more +1 "
              "than -1 training labels; the seeds without are kept."]
    return "\n".join(lines)
