"""Pieces shared by the landscape reproductions (restarts, deep-linear, momentum, backprop-failure, saddles).

`BatchedMLP` holds S independent fully connected networks whose layers are applied by one batched matrix product,
so one optimiser step trains all S at once (Adam and SGD act elementwise, so the networks never interact); the
rest loads scikit-learn's digits, makes progress bars, writes the figure and the JSON, and formats the report.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from .._io import atomic_write, write_json

__all__ = ["BatchedMLP", "ACTIVATIONS", "load_digits_split", "progress", "json_safe", "save_study", "markdown_table",
           "verdict", "fmt", "spearman"]

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"relu": torch.relu, "tanh": torch.tanh}


class BatchedMLP:
    """S independent MLPs with layer sizes `sizes`: the hidden layers apply `activation`, the last is linear.

    Weights of layer l are (S, a_l, a_{l+1}) with entries N(0, gain²/a_l), gain √2 for ReLU (He et al. 2015)
    and 1 otherwise (LeCun et al. 1998); biases start at 0. A forward pass maps X (n, a_0), shared by all
    networks, or (S, n, a_0) to (S, n, a_L).
    """

    def __init__(self, sizes: Sequence[int], n_models: int, activation: str = "relu", *, generator: torch.Generator,
                 dtype: torch.dtype = torch.float32, gain: float | None = None):
        if len(sizes) < 2 or min(sizes) < 1 or n_models < 1:
            raise ValueError(f"need at least two positive layer sizes and n_models >= 1, got {sizes}, {n_models}")
        self.activation = ACTIVATIONS[activation]
        gain = (math.sqrt(2.0) if activation == "relu" else 1.0) if gain is None else gain
        self.weights = [(torch.randn(n_models, a, b, generator=generator, dtype=dtype) * gain / math.sqrt(a))
                        .requires_grad_() for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        self.biases = [torch.zeros(n_models, 1, b, dtype=dtype, requires_grad=True) for b in sizes[1:]]

    def parameters(self) -> list[torch.Tensor]:
        return [*self.weights, *self.biases]

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        out = X
        for layer, (W, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            out = out @ W + b
            if layer < len(self.weights) - 1:
                out = self.activation(out)
        return out


def load_digits_split(*, pool: int = 1, test_size: float = 0.25, random_state: int = 0,
                      dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """scikit-learn's 8×8 digits (bundled, no download), average-pooled by `pool` (2: 4×4 images, 16 inputs), split
    75/25 stratified by `random_state`, each pixel standardised on the training rows. Keys X_train, y_train,
    X_test, y_test (labels int64)."""
    X, y = load_digits(return_X_y=True)
    if pool > 1:
        side = 8 // pool
        X = X.reshape(-1, side, pool, side, pool).mean(axis=(2, 4)).reshape(len(X), -1)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=test_size, random_state=random_state,
                                                        stratify=y)
    mean, scale = X_train.mean(axis=0), X_train.std(axis=0)
    scale[scale == 0] = 1.0
    return {"X_train": torch.as_tensor((X_train - mean) / scale, dtype=dtype), "y_train": torch.as_tensor(y_train),
            "X_test": torch.as_tensor((X_test - mean) / scale, dtype=dtype), "y_test": torch.as_tensor(y_test)}


def progress(verbose: int) -> Progress:
    """A rich progress bar (description, bar, done/total, elapsed), silent when verbose <= 0."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    disable=verbose <= 0, transient=True)


def json_safe(value):
    """`value` with every NaN or infinite float replaced by None, so that the JSON written is strict."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, float | np.floating) and not math.isfinite(value):
        return None
    return value


def save_study(result: dict, out_dir: str | Path, name: str, figure) -> list[Path]:
    """Write `name`.json (the result, non-finite numbers as null) and `name`.png (the matplotlib Figure, rendered
    by Agg), each atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    out_dir = Path(out_dir)
    FigureCanvasAgg(figure)
    figure.tight_layout()
    png = atomic_write(out_dir / f"{name}.png", lambda tmp: figure.savefig(tmp, format="png", dpi=120))
    return [write_json(out_dir / f"{name}.json", json_safe(result)), png]


def fmt(value: float, digits: int = 3) -> str:
    """A number in `digits` significant digits, "—" for None/NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}g}"


def verdict(agrees: bool) -> str:
    return "agrees" if agrees else "does not agree"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (ties by average rank); NaN when either side is constant."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def batched_learning_time(weights: list[torch.Tensor], loss_fn: Callable, lr: torch.Tensor, target: float,
                          n_rates: int, max_iter: int, blow_up: float) -> dict:
    """Full-batch gradient descent on a batch of nets at once, rate-major (`n_rates` step sizes × seeds, `lr` of
    shape (batch, 1, 1)); `loss_fn(weights)` gives the (batch,) losses. The learning time of a net is the first
    iteration with loss <= `target`; of a step size, the median over its seeds. Nets whose loss is not finite or
    exceeds `blow_up` stop moving. Stops as soon as some step size's median is known (no undecided one can beat
    it) or after `max_iter`. Returns the best step size's index and iterations (max_iter and censored when none
    reached the target) and the first losses."""
    n_nets = weights[0].shape[0]
    n_seed = n_nets // n_rates
    hit = np.full(n_nets, -1)
    alive = torch.ones(n_nets, dtype=torch.bool)
    need = n_seed // 2 + 1
    first = None
    for it in range(max_iter + 1):
        loss = loss_fn(weights)
        values = loss.detach().numpy()
        first = values if first is None else first
        hit[(values <= target) & (hit < 0)] = it
        alive &= torch.from_numpy(np.isfinite(values) & (values < blow_up))
        if ((hit.reshape(n_rates, n_seed) >= 0).sum(axis=1) >= need).any() or it == max_iter:
            break
        grads = torch.autograd.grad(torch.where(alive, loss, 0.0).sum(), weights)
        with torch.no_grad():
            step = torch.where(alive.view(-1, 1, 1), lr, 0.0)
            for W, G in zip(weights, grads, strict=True):
                W -= step * torch.nan_to_num(G)
    medians = np.sort(np.where(hit < 0, np.inf, hit).reshape(n_rates, n_seed), axis=1)[:, need - 1]
    best = int(np.argmin(medians))
    censored = not np.isfinite(medians[best])
    return {"best": best, "iterations": float(max_iter if censored else medians[best]), "censored": bool(censored),
            "first_losses": first}
