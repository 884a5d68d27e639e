"""Restarts: how the final losses of many random restarts spread with the width of the network (Choromanska,
Henaff, Mathieu, Ben Arous & LeCun 2015, "The loss surfaces of multilayer networks", AISTATS).

The paper trains single-hidden-layer ReLU networks of 25-500 units on MNIST downsampled to 10×10 by SGD, many
times each, and finds that the final losses concentrate in a band as the width grows (histograms of the losses
per width) and that the correlation between the training and the test loss of the restarts falls with width.
Here: scikit-learn's digits average-pooled to 4×4 (16 inputs: small enough that the narrow networks cannot fit the
training set, as with their 10×10 MNIST), a stratified 75/25 split, cross-entropy (negative log-likelihood),
mini-batch SGD with momentum 0.9 and the learning rate annealed to 0 by a cosine schedule, so that the weights
have stopped moving when training ends. Each seed draws its own initialisation (He-normal) and batch order;
all seeds of a width are trained at once as a batch of independent networks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ._common import (
    BatchedMLP,
    fmt,
    load_digits_split,
    markdown_table,
    progress,
    save_study,
    spearman,
    verdict,
)

__all__ = ["CLAIM", "MIN_WIDTHS", "RestartsConfig", "run", "save", "report", "trend_verdict"]

CLAIM = ("Choromanska et al. (2015), 'The loss surfaces of multilayer networks' (AISTATS): the final losses "
         "of SGD restarts of single-hidden-layer networks concentrate as the width grows (25 to 500 units: the "
         "spread shrinks and the band moves down), and the correlation between the training and the test loss of "
         "the restarts decreases with the width.")

MIN_WIDTHS = 4  # Spearman over 2 widths is always ±1 and over 3 takes 4 values: no evidence of a trend


@dataclass
class RestartsConfig:
    """Widths, restarts per width, epochs, mini-batch size, peak learning rate, SGD momentum, image pooling."""

    widths: list[int] = field(default_factory=lambda: [25, 50, 100, 250, 500])
    seeds: int = 40
    epochs: int = 100
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    pool: int = 2

    @classmethod
    def fast(cls) -> RestartsConfig:
        return cls(widths=[10, 25, 100, 250], seeds=6, epochs=12)


def _losses(net: BatchedMLP, X: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-network mean cross-entropy and misclassification rate on (X, y)."""
    with torch.no_grad():
        logits = net(X)
        loss = F.cross_entropy(logits.transpose(1, 2), y.expand(logits.shape[0], -1), reduction="none").mean(dim=1)
        error = (logits.argmax(dim=2) != y).float().mean(dim=1)
    return loss.numpy().astype(float), error.numpy().astype(float)


def _train_width(width: int, data: dict, config: RestartsConfig, seed: int, bar, task) -> dict:
    """`config.seeds` networks of this width, trained together (each with its own batch order)."""
    generator = torch.Generator().manual_seed(seed)
    X, y = data["X_train"], data["y_train"]
    n, S = X.shape[0], config.seeds
    net = BatchedMLP([X.shape[1], width, 10], S, "relu", generator=generator)
    optimizer = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.epochs)
    tail = max(1, config.epochs // 10)
    for epoch in range(config.epochs):
        if epoch == config.epochs - tail:
            before, _ = _losses(net, X, y)
        order = torch.argsort(torch.rand(S, n, generator=generator), dim=1)
        for start in range(0, n, config.batch_size):
            rows = order[:, start:start + config.batch_size]
            logits = net(X[rows])
            loss = F.cross_entropy(logits.reshape(-1, 10), y[rows].reshape(-1), reduction="sum") / rows.shape[1]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
        bar.advance(task)
    train_loss, train_error = _losses(net, X, y)
    test_loss, test_error = _losses(net, data["X_test"], data["y_test"])
    return {"width": width, "train_loss": train_loss.tolist(), "test_loss": test_loss.tolist(),
            "train_error": train_error.tolist(), "test_error": test_error.tolist(),
            "last_epochs_relative_change": float(np.max(np.abs(train_loss - before) / before))}


def _describe(values: list[float]) -> dict:
    v = np.asarray(values)
    q1, q3 = np.percentile(v, [25, 75])
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)), "iqr": float(q3 - q1),
            "cv": float(v.std(ddof=1) / v.mean()), "min": float(v.min()), "max": float(v.max())}


def trend_verdict(rho: float, n_widths: int) -> str:
    """Verdict on "falls with width" from Spearman's ρ(width, statistic) over `n_widths` widths: agrees at
    ρ <= −0.9, partly for −0.9 < ρ < 0, does not agree for ρ >= 0 (or NaN); too few widths below MIN_WIDTHS."""
    if n_widths < MIN_WIDTHS:
        return f"too few widths ({n_widths} < {MIN_WIDTHS})"
    rho = round(rho, 9)  # one swap among 5 widths is ρ = −0.9 exactly, −0.8999999999999998 in floating point
    return "agrees" if rho <= -0.9 else "partly agrees" if rho < 0 else "does not agree"


def run(fast: bool = False, verbose: int = 0, random_state: int = 0) -> dict:
    """Train `seeds` restarts per width; per width: loss statistics and the train-test loss correlation."""
    config = RestartsConfig.fast() if fast else RestartsConfig()
    data = load_digits_split(pool=config.pool, random_state=random_state)
    rows = []
    with progress(verbose) as bar:
        task = bar.add_task("restarts (epochs)", total=config.epochs * len(config.widths))
        for width in config.widths:
            row = _train_width(width, data, config, random_state * 100_003 + width, bar, task)
            row["train"] = _describe(row["train_loss"])
            row["test"] = _describe(row["test_loss"])
            row["train_test_correlation"] = float(np.corrcoef(row["train_loss"], row["test_loss"])[0, 1])
            rows.append(row)
    widths = [r["width"] for r in rows]
    summary = {"spearman_width_train_std": spearman(widths, [r["train"]["std"] for r in rows]),
               "spearman_width_test_std": spearman(widths, [r["test"]["std"] for r in rows]),
               "spearman_width_correlation": spearman(widths, [r["train_test_correlation"] for r in rows]),
               "train_std_ratio_first_last": rows[0]["train"]["std"] / rows[-1]["train"]["std"],
               "test_std_ratio_first_last": rows[0]["test"]["std"] / rows[-1]["test"]["std"]}
    return {"config": asdict(config), "random_state": random_state,
            "data": {"n_train": int(data["X_train"].shape[0]), "n_test": int(data["X_test"].shape[0]),
                     "n_inputs": int(data["X_train"].shape[1])},
            "widths": rows, "summary": summary}


def save(result: dict, out_dir) -> list[Path]:
    """restarts.json and restarts.png (box plots of the final train and test losses per width; train vs test)."""
    from matplotlib.figure import Figure

    rows = result["widths"]
    labels = [str(r["width"]) for r in rows]
    figure = Figure(figsize=(15, 4.2))
    for position, split in enumerate(("train", "test"), start=1):
        ax = figure.add_subplot(1, 3, position)
        ax.boxplot([r[f"{split}_loss"] for r in rows], tick_labels=labels)
        ax.set(yscale="log", xlabel="hidden units", ylabel=f"final {split} loss (cross-entropy)",
               title=f"{split} loss of {result['config']['seeds']} restarts per width")
    ax = figure.add_subplot(1, 3, 3)
    for r in rows:
        ax.scatter(r["train_loss"], r["test_loss"], s=12, label=f"{r['width']} (ρ = {r['train_test_correlation']:.2f})")
    ax.set(xscale="log", xlabel="train loss", ylabel="test loss", title="train vs test loss per restart")
    ax.legend(title="width (Pearson ρ)", fontsize="small")
    return save_study(result, out_dir, "restarts", figure)


def report(result: dict) -> str:
    """The claims next to the measured numbers (a per-width table and the verdicts)."""
    rows, s = result["widths"], result["summary"]
    per_width = markdown_table(
        ["width", "train loss mean", "train std", "train CV", "test loss mean", "test std", "train-test ρ",
         "last-10% change"],
        [[r["width"], fmt(r["train"]["mean"]), fmt(r["train"]["std"], 2), fmt(r["train"]["cv"], 2),
          fmt(r["test"]["mean"]), fmt(r["test"]["std"], 2), f"{r['train_test_correlation']:.2f}",
          fmt(r["last_epochs_relative_change"], 2)] for r in rows])

    def trend(value):
        return trend_verdict(value, len(rows))

    first, last = rows[0]["width"], rows[-1]["width"]
    claims = markdown_table(["claim", "measured", "verdict"], [
        ["spread of the final training losses shrinks with width",
         f"std {first} → {last} units: ÷{s['train_std_ratio_first_last']:.2g}; Spearman(width, std) = "
         f"{s['spearman_width_train_std']:.2f}", trend(s["spearman_width_train_std"])],
        ["spread of the final test losses shrinks with width",
         f"std ÷{s['test_std_ratio_first_last']:.2g}; Spearman(width, std) = {s['spearman_width_test_std']:.2f}",
         trend(s["spearman_width_test_std"])],
        ["the band of final losses moves down with width",
         f"mean train loss {fmt(rows[0]['train']['mean'])} → {fmt(rows[-1]['train']['mean'])}",
         verdict(rows[-1]["train"]["mean"] < rows[0]["train"]["mean"])],
        ["train-test loss correlation decreases with width",
         ", ".join(f"{r['width']}: {r['train_test_correlation']:.2f}" for r in rows) + "; Spearman = "
         f"{s['spearman_width_correlation']:.2f}", trend(s["spearman_width_correlation"])],
    ])
    data = result["data"]
    side = 8 // result["config"]["pool"]
    setting = (f"{result['config']['seeds']} SGD restarts per width on digits pooled to {side}×{side} "
               f"({data['n_inputs']} inputs, {data['n_train']} train / {data['n_test']} test rows), "
               f"{result['config']['epochs']} epochs.")
    rule = (f"Trend verdicts: Spearman ρ(width, statistic) <= −0.9 agrees, < 0 partly agrees, >= 0 does not agree; "
            f"with fewer than {MIN_WIDTHS} widths no trend verdict is given.")
    return f"## restarts\n\n{CLAIM}\n\n{setting}\n\n{per_width}\n\n{claims}\n\n{rule}"

