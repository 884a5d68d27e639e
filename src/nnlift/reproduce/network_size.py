"""Network size: test error and norms of one-hidden-layer ReLU networks as the width grows past interpolation
(Neyshabur, Tomioka & Srebro 2015, "In search of the real inductive bias", Fig. 1), and Path-SGD against SGD
(Neyshabur, Salakhutdinov & Srebro 2015, "Path-SGD").

Every network is trained by mini-batch SGD (no momentum, no weight decay, no early stopping, a fixed number of
epochs) on the cross-entropy, on three data sets: scikit-learn's digits (a small training subset, so that the
narrow networks cannot fit it), the same subset with a fraction of its labels redrawn at random, and a planted
width-4 ReLU teacher on Gaussian inputs with labels 1[f(x) > median]. Per width and method the step comes from a
small grid: among the steps at which every seed fits the training set, the one with the lowest error on held-out
validation rows (so no step is picked for stopping short of interpolation); the test set is only measured.
Measured per width: train and test error, the ℓ2 norm of all parameters and the ℓ2 path norm (Path-SGD's φ_2, the
biases being edges from a constant unit as in `nnlift.optim.PathSGD`).

All seeds × steps of one width and method are one network whose hidden layer is the concatenation of their hidden
units and whose output layer is block-diagonal (the off-block weights start at 0 and their gradient is masked, so
they stay 0): each block is then an independent network, `PathSGD`'s path scaling of a block only sees that
block's weights, and weighting each block's loss by its step while the optimiser's step is 1 gives every block its
own step. The seeds differ in their initialisation; every network of a data set sees the same batch sequence, and
SGD and Path-SGD start each seed from the same initialisation, so their comparison is paired.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from itertools import product
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..datasets import make_teacher
from ..optim import PathSGD
from ._common import fmt, load_digits_split, markdown_table, progress, save_study, spearman, verdict

__all__ = ["CLAIM", "NetworkSizeConfig", "path_norm", "weight_norm", "interpolation_index", "no_rise_verdict",
           "non_increasing_verdict", "norm_growth_verdict", "path_sgd_verdict", "path_sgd_lower_verdict",
           "path_sgd_faster_verdict", "run", "save", "report"]

CLAIM = ("Neyshabur, Tomioka & Srebro (2015), 'In search of the real inductive bias: on the role of implicit "
         "regularization in deep learning' (ICLR workshop), Fig. 1: the test error of one-hidden-layer networks "
         "trained by SGD keeps falling as the number of hidden units grows, even after the training error is zero "
         "(with label noise it flattens rather than rising), so the capacity that matters is a norm, such as the "
         "path norm, not the number of parameters. Neyshabur, Salakhutdinov & Srebro (2015), 'Path-SGD' (NIPS): "
         "steepest descent w.r.t. the path regulariser trains faster and reaches lower test error than SGD.")

METHODS = ("sgd", "path_sgd")
DATASETS = ("digits", "digits_noisy", "teacher")


@dataclass
class NetworkSizeConfig:
    """Widths, seeds, epochs, batch size, the step grids per method, and the three data sets' sizes."""

    widths: list[int] = field(default_factory=lambda: [4, 8, 16, 32, 64, 128, 256, 512])
    seeds: int = 5
    epochs: int = 40
    batch_size: int = 64
    sgd_lrs: list[float] = field(default_factory=lambda: [0.1, 0.3, 1.0])
    path_sgd_lrs: list[float] = field(default_factory=lambda: [0.1, 0.3, 1.0])
    digits_train: int = 500
    label_noise: float = 0.2
    teacher_train: int = 500
    teacher_val: int = 1000
    teacher_test: int = 5000
    teacher_inputs: int = 20
    teacher_units: int = 4

    @classmethod
    def fast(cls) -> NetworkSizeConfig:
        return cls(widths=[4, 32, 128], seeds=2, epochs=15, sgd_lrs=[0.3], path_sgd_lrs=[0.3], digits_train=300,
                   teacher_train=300, teacher_val=300, teacher_test=1000)


def path_norm(W1, b1, W2, b2) -> float:
    """ℓ2 path norm of x ↦ W2 relu(W1 x + b1) + b2 (Neyshabur, Salakhutdinov & Srebro 2015, φ_p with p = 2): the
    square root of the sum over all input-output paths of the product of their squared weights, the biases being
    edges from a unit of constant output 1. Weights are (out, in) like `nn.Linear`; = √(Σ_o γ_in(o)), γ_in of
    `PathSGD.path_scaling`'s forward pass: Σ_j (Σ_i W1_ji² + b1_j²)(Σ_o W2_oj²) + Σ_o b2_o²."""
    W1, b1, W2, b2 = (np.asarray(a, dtype=float) for a in (W1, b1, W2, b2))
    hidden = np.square(W1).sum(axis=1) + np.square(b1)
    return float(np.sqrt(np.square(W2).sum(axis=0) @ hidden + np.square(b2).sum()))


def weight_norm(W1, b1, W2, b2) -> float:
    """ℓ2 (Frobenius) norm of all parameters of both layers, biases included."""
    return float(np.sqrt(sum(np.square(np.asarray(a, dtype=float)).sum() for a in (W1, b1, W2, b2))))


class _BlockNetwork:
    """One-hidden-layer ReLU networks of `width` units, one per (initialisation, step) pair, as one `nn.Linear`
    chain: the hidden layer concatenates their units, the output layer is block-diagonal (`mask`). Initialisation
    s is drawn from `generators[s]`: first layer N(0, 2/d), second N(0, 2/width) (He et al. 2015, as
    `BatchedMLP`), biases 0; the blocks are ordered initialisation-major."""

    def __init__(self, n_inputs: int, n_classes: int, width: int, lrs: list[float], generators: list):
        inits = [(torch.randn(width, n_inputs, generator=g) * (2 / n_inputs) ** 0.5,
                  torch.randn(n_classes, width, generator=g) * (2 / width) ** 0.5) for g in generators]
        self.n_blocks, self.n_classes = len(inits) * len(lrs), n_classes
        self.mask = torch.block_diag(*[torch.ones(n_classes, width)] * self.n_blocks)
        self.layers = [nn.Linear(n_inputs, width * self.n_blocks), nn.Linear(*self.mask.T.shape)]
        self.units = [(slice(m * width, (m + 1) * width), slice(m * n_classes, (m + 1) * n_classes))
                      for m in range(self.n_blocks)]
        with torch.no_grad():
            for layer in self.layers:
                layer.bias.zero_()
            self.layers[1].weight.zero_()
            for m, ((first, second), _) in enumerate(product(inits, lrs)):
                units, outputs = self.units[m]
                self.layers[0].weight[units] = first
                self.layers[1].weight[outputs, units] = second
        self.step_weights = torch.tensor(lrs).repeat(len(inits))

    def parameters(self) -> list[torch.Tensor]:
        return [p for layer in self.layers for p in (layer.weight, layer.bias)]

    def logits(self, X: torch.Tensor) -> torch.Tensor:
        """(n, blocks, classes)."""
        out = self.layers[1](torch.relu(self.layers[0](X)))
        return out.view(X.shape[0], self.n_blocks, self.n_classes)

    def losses(self, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-block mean cross-entropy and misclassification rate."""
        logits = self.logits(X)
        target = y[:, None].expand(-1, self.n_blocks)
        loss = F.cross_entropy(logits.transpose(1, 2), target, reduction="none").mean(dim=0)
        return loss, (logits.argmax(dim=2) != target).float().mean(dim=0)

    def block(self, m: int) -> tuple[np.ndarray, ...]:
        """(W1, b1, W2, b2) of block m, as `nn.Linear` stores them."""
        units, outputs = self.units[m]
        first, second = self.layers
        return tuple(a.detach().numpy().copy() for a in (first.weight[units], first.bias[units],
                                                         second.weight[outputs, units], second.bias[outputs]))


def _digits(config: NetworkSizeConfig, random_state: int, label_noise: float) -> dict:
    """Digits: `digits_train` rows of the 75% training split (the rest: validation), the 25% split as test; a
    fraction `label_noise` of the training rows get a label drawn uniformly from the other nine."""
    data = load_digits_split(random_state=random_state)
    rng = np.random.default_rng(random_state)
    order = torch.as_tensor(rng.permutation(data["X_train"].shape[0]))
    train, val = order[:config.digits_train], order[config.digits_train:]
    y_train = data["y_train"][train].clone()
    noisy = torch.as_tensor(rng.random(len(train)) < label_noise)
    y_train[noisy] = (y_train[noisy] + torch.as_tensor(rng.integers(1, 10, int(noisy.sum())))) % 10
    return {"X_train": data["X_train"][train], "y_train": y_train, "X_val": data["X_train"][val],
            "y_val": data["y_train"][val], "X_test": data["X_test"], "y_test": data["y_test"], "n_classes": 10,
            "noisy_fraction": float(noisy.float().mean())}


def _teacher(config: NetworkSizeConfig, random_state: int) -> dict:
    """A width-`teacher_units` ReLU teacher f on N(0, I) inputs (`nnlift.datasets.make_teacher`, noiseless); label
    1[f(x) > median of f on the training rows]."""
    n, val = config.teacher_train, config.teacher_val
    teacher = make_teacher(n + val, config.teacher_inputs, config.teacher_units, activation="relu", noise=0.0,
                           random_state=random_state, n_test=config.teacher_test)
    threshold = np.median(teacher.y[:n])
    X = torch.as_tensor(teacher.X, dtype=torch.float32)
    y = torch.as_tensor(teacher.y > threshold).long()
    return {"X_train": X[:n], "y_train": y[:n], "X_val": X[n:], "y_val": y[n:],
            "X_test": torch.as_tensor(teacher.X_test, dtype=torch.float32),
            "y_test": torch.as_tensor(teacher.y_test > threshold).long(), "n_classes": 2,
            "positive_fraction": float(y[:n].float().mean())}


def _train(data: dict, method: str, seed: int, width: int, config: NetworkSizeConfig, bar, task) -> dict:
    """`config.seeds` initialisations × `method`'s step grid of networks of `width` units, trained for
    `config.epochs` epochs on the same batches; per network (arrays seeds × steps): final train loss, train /
    validation / test error, both norms, the path norm at initialisation, the first epoch with zero train error
    (0: never). Initialisation s depends on (seed + s, width); the batch order on `seed`."""
    X, y = data["X_train"], data["y_train"]
    lrs = config.sgd_lrs if method == "sgd" else config.path_sgd_lrs
    generators = [torch.Generator().manual_seed((seed + s) * 10_007 + width) for s in range(config.seeds)]
    net = _BlockNetwork(X.shape[1], data["n_classes"], width, lrs, generators)
    init_norms = [path_norm(*net.block(m)) for m in range(net.n_blocks)]
    optimizer = torch.optim.SGD(net.parameters(), lr=1.0) if method == "sgd" else PathSGD(net.layers, lr=1.0)
    generator = torch.Generator().manual_seed(seed)
    first_zero = np.zeros(net.n_blocks, dtype=int)
    for epoch in range(config.epochs):
        for rows in torch.randperm(X.shape[0], generator=generator).split(config.batch_size):
            loss, _ = net.losses(X[rows], y[rows])
            optimizer.zero_grad()
            (net.step_weights * loss).sum().backward()
            net.layers[1].weight.grad.mul_(net.mask)
            optimizer.step()
        with torch.no_grad():
            _, error = net.losses(X, y)
        first_zero[(error.numpy() == 0) & (first_zero == 0)] = epoch + 1
        bar.advance(task)
    with torch.no_grad():
        train_loss, train_error = net.losses(X, y)
        _, val_error = net.losses(data["X_val"], data["y_val"])
        _, test_error = net.losses(data["X_test"], data["y_test"])
    blocks = [net.block(m) for m in range(net.n_blocks)]
    measured = {"train_loss": train_loss.numpy(), "train_error": train_error.numpy(), "val_error": val_error.numpy(),
                "test_error": test_error.numpy(), "path_norm": [path_norm(*b) for b in blocks],
                "weight_norm": [weight_norm(*b) for b in blocks], "init_path_norm": init_norms,
                "epochs_to_zero": first_zero}
    return {key: np.asarray(value).reshape(config.seeds, len(lrs)) for key, value in measured.items()}


def _select(runs: list[dict], widths: list[int], lrs: list[float]) -> list[dict]:
    """Per width, the step of the grid for the paper's regime: among the steps at which every seed ends with zero
    train error, the one with the lowest mean validation error; if there is none, the lowest mean train loss.
    Returns that step's numbers per seed (runs: `_train`'s arrays, seeds × steps, per width)."""
    stacked = {key: np.stack([r[key] for r in runs], axis=1) for key in runs[0]}
    rows = []
    for w, width in enumerate(widths):
        val, loss = stacked["val_error"][:, w].mean(axis=0), stacked["train_loss"][:, w].mean(axis=0)
        fits = stacked["train_error"][:, w].max(axis=0) == 0
        best = int(np.argmin(np.where(fits, val, np.inf)) if fits.any() else np.argmin(loss))
        row = {"width": width, "lr": lrs[best],
               "val_error_per_lr": {str(lr): float(v) for lr, v in zip(lrs, val, strict=True)},
               "train_loss_per_lr": {str(lr): float(v) for lr, v in zip(lrs, loss, strict=True)}}
        row.update({key: stacked[key][:, w, best].tolist() for key in stacked})
        rows.append(row)
    return rows


def _summary(row: dict) -> dict:
    """Mean over seeds of each measured quantity, the standard error of the test error, and the mean epoch at which
    the train error first hit zero (None unless every seed got there)."""
    seeds = len(row["test_error"])
    means = {key: float(np.mean(row[key])) for key in ("train_loss", "train_error", "val_error", "test_error",
                                                       "path_norm", "weight_norm", "init_path_norm")}
    reached = [e for e in row["epochs_to_zero"] if e > 0]
    se = float(np.std(row["test_error"], ddof=1) / np.sqrt(seeds)) if seeds > 1 else 0.0
    epochs = float(np.mean(reached)) if len(reached) == seeds else None
    return {"width": row["width"], "lr": row["lr"]} | means | {"test_error_se": se, "epochs_to_zero": epochs}


def interpolation_index(train_errors: list[float]) -> int | None:
    """Index of the narrowest width from which on every width has mean training error (over seeds) 0, None if the
    widest does not."""
    index = None
    for i in reversed(range(len(train_errors))):
        if train_errors[i] != 0:
            break
        index = i
    return index


def _tolerance(se_a: float, se_b: float, n_test: int) -> float:
    """Two standard errors of a difference of two means, at least one test example."""
    return max(2 * float(np.hypot(se_a, se_b)), 1 / n_test)


def no_rise_verdict(train_error: list[float], test_error: list[float], test_se: list[float], n_test: int) -> dict:
    """Verdict (i), Neyshabur, Tomioka & Srebro 2015, Fig. 1: the widest network's test error is at most that of the
    narrowest interpolating one, plus `_tolerance`. Needs an interpolating width narrower than the widest."""
    k = interpolation_index(train_error)
    if k is None or k == len(test_error) - 1:
        return {"agrees": False, "interpolation_index": k, "rise": None, "tolerance": None}
    rise = test_error[-1] - test_error[k]
    tolerance = _tolerance(test_se[-1], test_se[k], n_test)
    return {"agrees": bool(rise <= tolerance), "interpolation_index": k, "rise": float(rise), "tolerance": tolerance}


def non_increasing_verdict(widths: list[int], train_error: list[float], test_error: list[float],
                           test_se: list[float], n_test: int) -> dict:
    """Verdict (ii), ibid.: past the interpolation width no wider network has a test error above a narrower one's by
    more than `_tolerance` of the pair (the largest such excess is reported), with Spearman(width, test error)."""
    k = interpolation_index(train_error)
    if k is None or k == len(test_error) - 1:
        return {"agrees": False, "worst_excess": None, "spearman": None}
    excess = max(test_error[b] - test_error[a] - _tolerance(test_se[a], test_se[b], n_test)
                 for a in range(k, len(widths)) for b in range(a + 1, len(widths)))
    return {"agrees": bool(excess <= 0), "worst_excess": float(excess),
            "spearman": spearman(widths[k:], test_error[k:])}


def norm_growth_verdict(widths: list[int], norms: list[float], n_params: list[int], start: int | None,
                        ratio: float = 0.5) -> dict:
    """Verdict (iii), ibid. and Neyshabur, Tomioka & Srebro 2015b ("Norm-based capacity control"): from the
    interpolation width `start` on, the log-log slope of the path norm against the width is at most `ratio` times
    that of the number of parameters (least squares, `numpy.polyfit`)."""
    if start is None or len(widths) - start < 2:
        return {"agrees": False, "norm_slope": None, "params_slope": None}
    x = np.log(widths[start:])
    norm_slope = float(np.polyfit(x, np.log(norms[start:]), 1)[0])
    params_slope = float(np.polyfit(x, np.log(n_params[start:]), 1)[0])
    return {"agrees": bool(norm_slope <= ratio * params_slope), "norm_slope": norm_slope,
            "params_slope": params_slope, "ratio": ratio}


def path_sgd_verdict(sgd_test: list[list[float]], path_test: list[list[float]], n_test: int) -> dict:
    """Verdict (iv), Neyshabur, Salakhutdinov & Srebro 2015 (their experiments): Path-SGD's test error is at most
    SGD's plus two standard errors of the seed-paired difference (same initialisation and batches; at least one
    test example) at more than half of the widths. Arguments: test errors per width, per seed."""
    diff = np.asarray(path_test, dtype=float) - np.asarray(sgd_test, dtype=float)
    seeds = diff.shape[1]
    se = diff.std(axis=1, ddof=1) / np.sqrt(seeds) if seeds > 1 else np.zeros(len(diff))
    within = diff.mean(axis=1) <= np.maximum(2 * se, 1 / n_test)
    return {"agrees": bool(within.sum() > len(within) / 2), "widths_within": int(within.sum()),
            "widths_lower": int((diff.mean(axis=1) < 0).sum()), "mean_difference": diff.mean(axis=1).tolist()}


def path_sgd_lower_verdict(sgd_test: list[list[float]], path_test: list[list[float]]) -> dict:
    """Verdict (v), the Path-SGD paper's claim itself: Path-SGD's test error is *lower* than SGD's, the
    seed-paired mean difference below −2 standard errors, at more than half of the widths."""
    diff = np.asarray(path_test, dtype=float) - np.asarray(sgd_test, dtype=float)
    seeds = diff.shape[1]
    se = diff.std(axis=1, ddof=1) / np.sqrt(seeds) if seeds > 1 else np.zeros(len(diff))
    lower = diff.mean(axis=1) < -2 * se
    return {"agrees": bool(lower.sum() > len(lower) / 2), "widths_lower": int(lower.sum())}


def path_sgd_faster_verdict(sgd_epochs: list[list[float]], path_epochs: list[list[float]]) -> dict:
    """Verdict (vi), "trains faster": among the widths where every seed of both methods reaches zero training
    error (epoch counts > 0), Path-SGD's mean epoch to get there is lower at more than half, and there are at
    least two such widths (otherwise it is not measurable and does not agree)."""
    sgd, path = np.asarray(sgd_epochs, dtype=float), np.asarray(path_epochs, dtype=float)
    both = (sgd > 0).all(axis=1) & (path > 0).all(axis=1)
    faster = path[both].mean(axis=1) < sgd[both].mean(axis=1)
    return {"agrees": bool(both.sum() >= 2 and faster.sum() > both.sum() / 2), "widths_compared": int(both.sum()),
            "widths_faster": int(faster.sum())}


def _n_params(width: int, n_inputs: int, n_classes: int) -> int:
    """Weights and biases of a one-hidden-layer network."""
    return width * (n_inputs + 1) + n_classes * (width + 1)


def _dataset(name: str, config: NetworkSizeConfig, random_state: int) -> dict:
    """The data set `name` of `DATASETS`."""
    if name == "teacher":
        return _teacher(config, random_state)
    return _digits(config, random_state, config.label_noise if name == "digits_noisy" else 0.0)


def _verdicts(study: dict, widths: list[int]) -> dict:
    """The six verdicts of one data set (SGD's curve for i-iii; Path-SGD against SGD for iv-vi)."""
    rows = study["sgd"]["summary"]
    train, test, se = ([r[key] for r in rows] for key in ("train_error", "test_error", "test_error_se"))
    n_test, n_params = study["data"]["n_test"], study["n_params"]
    start = interpolation_index(train)
    return {"no_rise": no_rise_verdict(train, test, se, n_test),
            "non_increasing": non_increasing_verdict(widths, train, test, se, n_test),
            "path_norm_bounded": norm_growth_verdict(widths, [r["path_norm"] for r in rows], n_params, start),
            "path_sgd": path_sgd_verdict([r["test_error"] for r in study["sgd"]["widths"]],
                                         [r["test_error"] for r in study["path_sgd"]["widths"]], n_test),
            "path_sgd_lower": path_sgd_lower_verdict([r["test_error"] for r in study["sgd"]["widths"]],
                                                     [r["test_error"] for r in study["path_sgd"]["widths"]]),
            "path_sgd_faster": path_sgd_faster_verdict([r["epochs_to_zero"] for r in study["sgd"]["widths"]],
                                                       [r["epochs_to_zero"] for r in study["path_sgd"]["widths"]])}


def run(fast: bool = False, verbose: int = 0, random_state: int = 0) -> dict:
    """Train SGD and Path-SGD networks of every width and step on the three data sets; select, summarise, judge."""
    start_time = time.perf_counter()
    config = NetworkSizeConfig.fast() if fast else NetworkSizeConfig()
    studies = {}
    with progress(verbose) as bar:
        total = len(DATASETS) * len(METHODS) * len(config.widths) * config.epochs
        task = bar.add_task("network size (epochs)", total=total)
        for d, name in enumerate(DATASETS):
            data = _dataset(name, config, random_state)
            n_inputs, n_classes = data["X_train"].shape[1], data["n_classes"]
            study = {"data": {"n_train": len(data["y_train"]), "n_val": len(data["y_val"]),
                              "n_test": len(data["y_test"]), "n_inputs": n_inputs, "n_classes": n_classes}
                     | {key: data[key] for key in ("noisy_fraction", "positive_fraction") if key in data},
                     "n_params": [_n_params(w, n_inputs, n_classes) for w in config.widths]}
            for method in METHODS:
                lrs = config.sgd_lrs if method == "sgd" else config.path_sgd_lrs
                runs = [_train(data, method, random_state * 1_000 + 100 * d, width, config, bar, task)
                        for width in config.widths]
                rows = _select(runs, config.widths, lrs)
                study[method] = {"lrs": lrs, "widths": rows, "summary": [_summary(r) for r in rows]}
            study["verdicts"] = _verdicts(study, config.widths)
            studies[name] = study
    agrees = {f"{name}_{key}": v["agrees"] for name, s in studies.items() for key, v in s["verdicts"].items()}
    return {"config": asdict(config), "random_state": random_state, "datasets": studies, "agrees": agrees,
            "wall_time_s": time.perf_counter() - start_time}


def save(result: dict, out_dir) -> list[Path]:
    """network_size.json and network_size.png (per data set: errors vs width; norms vs width)."""
    from matplotlib.figure import Figure

    names = list(result["datasets"])
    figure = Figure(figsize=(11, 3.6 * len(names)))
    for row, name in enumerate(names):
        study = result["datasets"][name]
        ax = figure.add_subplot(len(names), 2, 2 * row + 1)
        for method, marker in zip(METHODS, "os", strict=True):
            summary = study[method]["summary"]
            widths = [r["width"] for r in summary]
            line, = ax.plot(widths, [r["test_error"] for r in summary], marker=marker, label=f"{method} test")
            ax.plot(widths, [r["train_error"] for r in summary], ls=":", marker=marker, color=line.get_color(),
                    label=f"{method} train")
        ax.set(xscale="log", xlabel="hidden units H", ylabel="error", title=f"{name}: error vs width")
        ax.legend(fontsize="small")
        ax = figure.add_subplot(len(names), 2, 2 * row + 2)
        for method, marker in zip(METHODS, "os", strict=True):
            summary = study[method]["summary"]
            widths = [r["width"] for r in summary]
            line, = ax.plot(widths, [r["path_norm"] for r in summary], marker=marker, label=f"{method} path norm")
            ax.plot(widths, [r["weight_norm"] for r in summary], ls="--", marker=marker, color=line.get_color(),
                    label=f"{method} ℓ2 norm")
        ax.plot(widths, [r["init_path_norm"] for r in study["sgd"]["summary"]], "k:", label="path norm at init")
        ax.set(xscale="log", yscale="log", xlabel="hidden units H", ylabel="norm", title=f"{name}: norms vs width")
        ax.legend(fontsize="small")
    return save_study(result, out_dir, "network_size", figure)


def _table(study: dict) -> str:
    """Per width: parameters, each method's chosen step, train / test error, norms, epochs to zero train error."""
    rows = []
    for n_params, sgd, path in zip(study["n_params"], study["sgd"]["summary"], study["path_sgd"]["summary"],
                                   strict=True):
        rows.append([sgd["width"], n_params, f"{sgd['lr']:g}", fmt(sgd["train_error"], 2),
                     f"{fmt(sgd['test_error'])} ± {fmt(sgd['test_error_se'], 1)}",
                     f"{fmt(sgd['init_path_norm'])} → {fmt(sgd['path_norm'])}", fmt(sgd["weight_norm"]),
                     fmt(sgd["epochs_to_zero"], 2), f"{path['lr']:g}", fmt(path["train_error"], 2),
                     f"{fmt(path['test_error'])} ± {fmt(path['test_error_se'], 1)}", fmt(path["path_norm"]),
                     fmt(path["epochs_to_zero"], 2)])
    return markdown_table(["H", "#params", "SGD step", "SGD train err", "SGD test err ± se", "SGD path norm init → end",
                           "SGD ℓ2 norm", "SGD epochs to 0", "P-SGD step", "P-SGD train err", "P-SGD test err ± se",
                           "P-SGD path norm", "P-SGD epochs to 0"], rows)


def _claims(name: str, study: dict, widths: list[int]) -> list[list[str]]:
    """Claim, measured, verdict rows of one data set."""
    v = study["verdicts"]
    k = v["no_rise"]["interpolation_index"]
    test = [r["test_error"] for r in study["sgd"]["summary"]]
    at = f"H = {widths[k]}" if k is not None else "no width"
    rise = (f"test error {fmt(test[k])} at H = {widths[k]} (interpolation width) → {fmt(test[-1])} at "
            f"H = {widths[-1]}: change {v['no_rise']['rise']:+.3f}, tolerance {v['no_rise']['tolerance']:.3f}"
            if v["no_rise"]["rise"] is not None else f"{at} reaches zero train error below the widest")
    trend = (f"largest rise past interpolation minus its tolerance: {v['non_increasing']['worst_excess']:+.3f}; "
             f"Spearman(H, test error) = {fmt(v['non_increasing']['spearman'], 2)}"
             if v["non_increasing"]["worst_excess"] is not None else "not measurable (see above)")
    norm = v["path_norm_bounded"]
    growth = (f"log-log slope from {at}: path norm {norm['norm_slope']:.2f}, #params {norm['params_slope']:.2f} "
              f"(threshold {norm['ratio']:g}× the latter)" if norm["norm_slope"] is not None else
              "not measurable (fewer than two interpolating widths)")
    path = v["path_sgd"]
    return [
        [f"{name}: test error does not rise past interpolation (widest ≤ narrowest interpolating + 2 se)", rise,
         verdict(v["no_rise"]["agrees"])],
        [f"{name}: test error non-increasing in H past interpolation (every pair within 2 se)", trend,
         verdict(v["non_increasing"]["agrees"])],
        [f"{name}: SGD's path norm stays bounded while #params grows", growth,
         verdict(norm["agrees"])],
        [f"{name}: Path-SGD's test error not worse than SGD's (≤ SGD + 2 paired se) at most widths",
         f"within at {path['widths_within']}/{len(widths)} widths, mean lower at {path['widths_lower']}",
         verdict(path["agrees"])],
        [f"{name}: Path-SGD reaches lower test error than SGD (paired mean below −2 se) at most widths",
         f"significantly lower at {v['path_sgd_lower']['widths_lower']}/{len(widths)} widths",
         verdict(v["path_sgd_lower"]["agrees"])],
        [f"{name}: Path-SGD trains faster (fewer epochs to zero training error) at most widths where both get there",
         f"fewer epochs at {v['path_sgd_faster']['widths_faster']} of {v['path_sgd_faster']['widths_compared']} "
         "widths", verdict(v["path_sgd_faster"]["agrees"])],
    ]


def report(result: dict) -> str:
    """The claims next to the measured numbers: a table per data set and the verdicts."""
    config, widths = result["config"], result["config"]["widths"]
    parts = [f"## network-size\n\n{CLAIM}\n\nOne-hidden-layer ReLU networks, cross-entropy, mini-batch "
             f"{config['batch_size']}, {config['epochs']} epochs, no regularisation or early stopping, "
             f"{config['seeds']} initialisations per width (means ± standard error over them). Step per width and "
             f"method from SGD {config['sgd_lrs']}, Path-SGD {config['path_sgd_lrs']}: among the steps at which "
             "every seed fits the training set, the lowest validation error (else the lowest train loss). "
             "'Epochs to 0': mean first epoch with zero train error (— unless every seed got there). Interpolation "
             "width: the narrowest from which on every width has zero train error. Verdicts i-iii are read off "
             f"SGD's curve. Wall time {result['wall_time_s']:.0f} s."]
    for name, study in result["datasets"].items():
        d = study["data"]
        extra = (f", {d['noisy_fraction']:.0%} of the training labels redrawn" if "noisy_fraction" in d and
                 name == "digits_noisy" else "")
        parts.append(f"### {name} ({d['n_inputs']} inputs, {d['n_classes']} classes, {d['n_train']} train / "
                     f"{d['n_val']} validation / {d['n_test']} test rows{extra})\n\n{_table(study)}")
    rows = [row for name, study in result["datasets"].items() for row in _claims(name, study, widths)]
    parts.append(markdown_table(["claim", "measured", "verdict"], rows))
    return "\n\n".join(parts)
