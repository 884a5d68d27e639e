"""Real data that ships with scikit-learn: NN-LIFT with each score function vs backprop and sklearn's MLP.

For each data set (digits, breast cancer, diabetes) and seed: a 75/25 train/test split drawn with that seed
(stratified for the classification sets); the columns that are (almost) constant on the training rows dropped
(see `informative_columns`); a StandardScaler fitted on the training rows; for regression the target
standardised on the training rows too, with R² reported on the original scale. Every model has the data set's
hidden width k and the same activation:

- `nnlift[<score>]`: LiftClassifier / LiftRegressor with that `score_function`, fine-tuned (the default);
- `nnlift[<score>] start`: the same fit's NN-LIFT start `initial_params_`, before fine-tuning: what the tensor
  method (with the scale/bias and output-layer steps) gives on its own; its time is the fit time less the
  fine-tune;
- `backprop`: nnlift's BackpropClassifier / BackpropRegressor, random init, the same L-BFGS loop, unpenalised
  objective and iteration budget as the fine-tune (so it differs from `nnlift[<score>]` only in the start);
- `sklearn MLP`: MLPClassifier / MLPRegressor(hidden_layer_sizes=(k,)) with its defaults (Adam, alpha=1e-4)
  and `mlp_max_iter` epochs.

A model that raises is recorded as "failed: message" and the study goes on; the warnings each fit raises
(NNLiftWarning, NonGaussianInputWarning, ConvergenceWarning, ...) are counted by class.
"""

from __future__ import annotations

import os
import platform
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import sklearn
import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.preprocessing import StandardScaler

from .._io import atomic_write, write_json
from .._training import predict_two_layer
from ..baselines import BackpropClassifier, BackpropRegressor
from ..lift import LiftClassifier, LiftRegressor
from ..scores import get_score

__all__ = ["DATASETS", "RealDataConfig", "informative_columns", "run", "save", "print_table"]

# name -> (loader, task); the loaders read files bundled with scikit-learn, nothing is downloaded.
DATASETS: dict[str, tuple[Callable, str]] = {
    "breast_cancer": (load_breast_cancer, "classification"),
    "digits": (load_digits, "classification"),
    "diabetes": (load_diabetes, "regression"),
}
METRIC = {"classification": "accuracy", "regression": "R²"}


@dataclass
class RealDataConfig:
    """What to run. The default is the full study (11-18 min on two shared cores with OMP_NUM_THREADS=1).

    `hidden` is the width k per data set (k <= d, as NN-LIFT requires); `max_iter` the shared L-BFGS budget of
    the NN-LIFT fine-tune and the backprop baseline; `min_feature_rows` the fewest training rows that must
    differ from a column's most common value for the column to be kept; `name` the stem of the output files.
    """

    datasets: list[str] = field(default_factory=lambda: ["breast_cancer", "digits", "diabetes"])
    hidden: dict[str, int] = field(default_factory=lambda: {"breast_cancer": 8, "digits": 16, "diabetes": 5})
    scores: list[str] = field(default_factory=lambda: ["gaussian", "mixture", "student_t", "learned"])
    seeds: list[int] = field(default_factory=lambda: list(range(10)))
    activation: str = "tanh"
    test_size: float = 0.25
    max_iter: int = 200
    mlp_max_iter: int = 2000
    min_feature_rows: int = 10
    name: str = "real_data"

    @classmethod
    def fast(cls, **overrides) -> RealDataConfig:
        """Two seeds, the two small data sets, two scores: seconds, for tests and a first look."""
        settings = {"datasets": ["breast_cancer", "diabetes"], "scores": ["gaussian", "mixture"], "seeds": [0, 1],
                    "name": "real_data_fast"}
        return cls(**{**settings, **overrides})


@dataclass(frozen=True)
class _Split:
    task: str
    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray  # labels, or the standardised target
    y_test: np.ndarray  # labels, or the target on its original scale
    y_shift: float = 0.0
    y_scale: float = 1.0

    def metric(self, predictions: np.ndarray) -> float:
        if self.task == "classification":
            return float(np.mean(predictions == self.y_test))
        return float(r2_score(self.y_test, predictions * self.y_scale + self.y_shift))


def informative_columns(X: np.ndarray, min_rows: int) -> np.ndarray:
    """Mask of the columns in which at least `min_rows` rows differ from the column's most common value.

    Digits has border pixels that are blank in (almost) every image: a constant column, or two columns that
    are non-blank only in the same one or two images, make the input covariance singular, which the Gaussian
    score rejects. The same columns are dropped for every model.
    """
    return np.array([len(column) - np.unique(column, return_counts=True)[1].max() >= min_rows for column in X.T])


def _split(X: np.ndarray, y: np.ndarray, task: str, seed: int, config: RealDataConfig) -> _Split:
    stratify = y if task == "classification" else None
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=config.test_size, random_state=seed,
                                                        stratify=stratify)
    keep = informative_columns(X_train, config.min_feature_rows)
    scaler = StandardScaler().fit(X_train[:, keep])
    X_train, X_test = scaler.transform(X_train[:, keep]), scaler.transform(X_test[:, keep])
    if task == "classification":
        return _Split(task, X_train, X_test, y_train, y_test)
    shift, scale = float(y_train.mean()), float(y_train.std())
    return _Split(task, X_train, X_test, (y_train - shift) / scale, y_test, shift, scale)


def _score(name: str, seed: int):
    """The named score with its own random choices (e.g. the mixture's EM start) seeded like the rest of the fit."""
    score = get_score(name)
    if getattr(score, "random_state", False) is None:
        score.random_state = seed
    return score


def _attempt(fit: Callable[[], object], evaluate: Callable[[object], object]):
    """Run `fit()` (timed), then `evaluate(model)`.

    Returns (the evaluation or None, seconds of the fit, the error message or None, counts by class of the
    warnings that either step raised).
    """
    value, error, fitted_at = None, None, None
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = fit()
            fitted_at = time.perf_counter()
            value = evaluate(model)
        except Exception as exc:  # a failing model is a result of the study, not the end of it
            error = f"{type(exc).__name__}: {exc}"
    seconds = (fitted_at or time.perf_counter()) - started
    return value, seconds, error, dict(Counter(w.category.__name__ for w in caught))


def _start_predictions(model, X: np.ndarray) -> np.ndarray:
    """Predictions of the NN-LIFT start `initial_params_` (labels for a classifier)."""
    output = predict_two_layer(model.initial_params_, X, model.activation)
    if isinstance(model, LiftClassifier):
        return model.classes_[(output > 0).astype(int) if output.ndim == 1 else output.argmax(axis=1)]
    return output


def _lift_diagnostics(model, n_train: int) -> dict:
    diag = model.diagnostics_
    score = {key: value for key, value in diag["score"].items() if value is None or np.isscalar(value)}
    return {"samples_needed": diag["samples_needed"], "n_train": n_train,
            "subspace_gap": diag.get("subspace_gap"), "residual": diag.get("residual"),
            "scale_bias_r2": diag["scale_bias_r2"], "kurtosis_z": (diag["gaussianity"] or {}).get("kurtosis_z"),
            "score": score, "finetune": diag["finetune"], "finetune_seconds": diag["timings"].get("finetune", 0.0),
            "reliable": diag["reliable"], "reasons": diag["reasons"], "winner": diag["winner"],
            "guarantee_warnings": diag["warnings"]}


def _row(model_name: str, metric: float | None, seconds: float, error: str | None, warning_counts: dict,
         diagnostics: dict | None = None) -> dict:
    return {"model": model_name, "status": "ok" if error is None else "failed", "error": error, "metric": metric,
            "seconds": seconds, "warnings": warning_counts, "diagnostics": diagnostics}


def _lift_rows(split: _Split, score: str, k: int, config: RealDataConfig, seed: int) -> list[dict]:
    """The fine-tuned NN-LIFT model and its start, from one fit."""
    estimator = LiftClassifier if split.task == "classification" else LiftRegressor

    def fit():
        return estimator(k, activation=config.activation, score_function=_score(score, seed),
                         max_iter=config.max_iter, random_state=seed).fit(split.X_train, split.y_train)

    def evaluate(model):
        return (split.metric(model.predict(split.X_test)), split.metric(_start_predictions(model, split.X_test)),
                _lift_diagnostics(model, len(split.X_train)))

    value, seconds, error, counts = _attempt(fit, evaluate)
    name = f"nnlift[{score}]"
    if error is not None:
        return [_row(name, None, seconds, error, counts), _row(f"{name} start", None, seconds, error, counts)]
    metric, start_metric, diagnostics = value
    start_seconds = seconds - diagnostics["finetune_seconds"]
    return [_row(name, metric, seconds, None, counts, diagnostics),
            _row(f"{name} start", start_metric, start_seconds, None, {})]


def _baseline_row(name: str, make: Callable[[], object], split: _Split) -> dict:
    metric, seconds, error, counts = _attempt(lambda: make().fit(split.X_train, split.y_train),
                                              lambda model: split.metric(model.predict(split.X_test)))
    return _row(name, metric, seconds, error, counts)


def _seed_rows(split: _Split, k: int, config: RealDataConfig, seed: int, advance: Callable[[str], None]):
    classify = split.task == "classification"
    for score in config.scores:
        advance(f"nnlift[{score}]")
        yield from _lift_rows(split, score, k, config, seed)
    backprop = BackpropClassifier if classify else BackpropRegressor
    advance("backprop")
    yield _baseline_row("backprop", lambda: backprop(k, activation=config.activation, alpha=0.0,
                                                     max_iter=config.max_iter, random_state=seed), split)
    mlp = MLPClassifier if classify else MLPRegressor
    advance("sklearn MLP")
    yield _baseline_row("sklearn MLP", lambda: mlp(hidden_layer_sizes=(k,), activation=config.activation,
                                                   max_iter=config.mlp_max_iter, random_state=seed), split)


def _warm_up(activation: str) -> None:
    """One small NN-LIFT fit (tensor step and fine-tune) so one-off start-up costs of torch are not timed."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        LiftRegressor(2, activation=activation, max_iter=5, random_state=0).fit(X, np.tanh(X[:, 0]))


def _check(config: RealDataConfig) -> None:
    unknown = [name for name in config.datasets if name not in DATASETS]
    if unknown:
        raise ValueError(f"unknown data sets {unknown}; use some of {list(DATASETS)}")
    missing = [name for name in config.datasets if name not in config.hidden]
    if missing:
        raise ValueError(f"config.hidden gives no width k for {missing}")
    if not config.seeds:
        raise ValueError("config.seeds is empty")


def run(config: RealDataConfig, verbose: int = 1) -> dict:
    """Fit every model on every data set and seed; return the per-seed rows, the data sets and the summary."""
    _check(config)
    started = time.perf_counter()
    _warm_up(config.activation)
    rows, datasets = [], {}
    total = len(config.datasets) * len(config.seeds) * (len(config.scores) + 2)
    with Progress(console=Console(stderr=True), disable=not verbose) as progress:
        task = progress.add_task("real data", total=total)
        for name in config.datasets:
            loader, kind = DATASETS[name]
            X, y = loader(return_X_y=True)
            k = config.hidden[name]
            info = {"task": kind, "metric": METRIC[kind], "n": len(X), "d": X.shape[1], "k": k, "d_used": {}}
            if kind == "classification":
                info["majority_rate"] = float(np.bincount(y).max() / len(y))
            datasets[name] = info
            for seed in config.seeds:
                split = _split(X, y, kind, seed, config)
                info.update(n_train=len(split.X_train), n_test=len(split.X_test))
                info["d_used"][seed] = split.X_train.shape[1]

                def advance(model: str, name=name, seed=seed) -> None:
                    progress.update(task, description=escape(f"{name} seed {seed}: {model}"))

                for row in _seed_rows(split, k, config, seed, advance):
                    rows.append({"dataset": name, "seed": seed, **row})
                    if not row["model"].endswith(" start"):
                        progress.advance(task)
    environment = {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
                   "sklearn": sklearn.__version__, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                   "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                   "machine": platform.machine()}
    return {"config": asdict(config), "datasets": datasets, "rows": rows, "summary": _summarise(rows),
            "environment": environment, "wall_time_s": time.perf_counter() - started}


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value); None for no values."""
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _summarise(rows: list[dict]) -> dict:
    """Per data set and model: mean ± std over the seeds that ran, failures, warnings and NN-LIFT diagnostics."""
    groups: dict[str, dict[str, list[dict]]] = {}
    for row in rows:
        groups.setdefault(row["dataset"], {}).setdefault(row["model"], []).append(row)
    summary = {}
    for dataset, models in groups.items():
        summary[dataset] = {}
        for model, group in models.items():
            ok = [r for r in group if r["status"] == "ok"]
            metrics = [r["metric"] for r in ok]
            mean, std = _mean_std(metrics)
            seconds_mean, seconds_std = _mean_std([r["seconds"] for r in ok])
            entry = {"metric_mean": mean, "metric_std": std,
                     "metric_median": float(np.median(metrics)) if metrics else None,
                     "metric_min": min(metrics, default=None),
                     "metric_max": max(metrics, default=None), "seconds_mean": seconds_mean,
                     "seconds_std": seconds_std, "n_ok": len(ok), "n_failed": len(group) - len(ok),
                     "errors": sorted({r["error"] for r in group if r["error"] is not None}),
                     "warnings": dict(sum((Counter(r["warnings"]) for r in group), Counter()))}
            diagnostics = [r["diagnostics"] for r in ok if r["diagnostics"] is not None]
            if diagnostics:
                needed = [d["samples_needed"] for d in diagnostics]
                entry["samples_needed_median"] = float(np.median(needed))
                entry["samples_needed_over_n"] = float(np.mean([d["samples_needed"] > d["n_train"]
                                                                for d in diagnostics]))
                entry["finetune_iter_median"] = float(np.median([(d["finetune"] or {"n_iter": 0})["n_iter"]
                                                                 for d in diagnostics]))
                entry["reliable"] = float(np.mean([d["reliable"] for d in diagnostics]))
            summary[dataset][model] = entry
    return summary


def _plus_minus(mean: float, std: float, digits: int) -> str:
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def print_table(result: dict, console: Console | None = None) -> None:
    """The summary as a rich table, one section per data set, then the message of every failure."""
    seeds = len(result["config"]["seeds"])
    table = Table(title=f"Real data: test metric and fit time, mean ± std over {seeds} seeds")
    for column in ("data set", "model", "metric", "min – max", "fit (s)", "warnings", "needed (> n)"):
        table.add_column(column, justify="left" if column in ("data set", "model", "warnings") else "right",
                         no_wrap=column == "model")
    failures = []
    for dataset, models in result["summary"].items():
        info = result["datasets"][dataset]
        label = f"{dataset}\nk={info['k']}, {info['metric']}"
        for model, s in models.items():
            if not model.endswith(" start"):  # a start fails with its fit, with the same message
                failures += [f"{dataset} {model}: {error}" for error in s["errors"]]
            if s["metric_mean"] is None:
                metric, span, seconds = f"failed ×{s['n_failed']}", "", ""
            else:
                metric = _plus_minus(s["metric_mean"], s["metric_std"], 3)
                metric += f" ({s['n_failed']} failed)" if s["n_failed"] else ""
                span = f"{s['metric_min']:.3f} – {s['metric_max']:.3f}"
                seconds = _plus_minus(s["seconds_mean"], s["seconds_std"], 2)
            counts = ", ".join(f"{name.removesuffix('Warning')} {n}" for name, n in sorted(s["warnings"].items()))
            needed = ("" if "samples_needed_median" not in s else
                      f"{s['samples_needed_median']:.2g} ({s['samples_needed_over_n']:.0%})")
            table.add_row(label, escape(model), metric, span, seconds, counts, needed)
            label = ""
        table.add_section()
    console = console or Console()
    console.print(table)
    console.print("needed: median over seeds of NN-LIFT's samples_needed (rows for 10% error on the weakest "
                  "component); (> n): share of seeds where it exceeds the training rows")
    for failure in failures:
        console.print(f"[red]failed:[/] {escape(failure)}")


def _model_colour(model: str) -> str:
    if model.endswith(" start"):
        return "tab:orange"
    return {"backprop": "tab:green", "sklearn MLP": "tab:purple"}.get(model, "tab:blue")


def save(result: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """Write <name>.json (every number) and <name>.png (metric and fit time per model, one column per data set)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    stem = result["config"]["name"]
    json_path = write_json(out_dir / f"{stem}.json", result)
    datasets = list(result["summary"])
    fig, axes = plt.subplots(2, len(datasets), figsize=(5.5 * len(datasets), 8), squeeze=False)
    rng = np.random.default_rng(0)  # jitter of the per-seed dots
    for column, dataset in enumerate(datasets):
        info, models = result["datasets"][dataset], result["summary"][dataset]
        ax_metric, ax_time = axes[0, column], axes[1, column]
        names = list(models)
        x = np.arange(len(names))
        floor = -0.5 if info["task"] == "regression" else None
        for i, model in enumerate(names):
            s, colour = models[model], _model_colour(model)
            if s["metric_mean"] is None:
                ax_metric.annotate("failed", (i, 0.02), xycoords=("data", "axes fraction"), ha="center",
                                   rotation=90, color="tab:red", va="bottom")
                continue
            seeds = np.array([r["metric"] for r in result["rows"]
                              if r["dataset"] == dataset and r["model"] == model and r["metric"] is not None])
            shown = seeds if floor is None else np.maximum(seeds, floor)
            ax_metric.scatter(i + rng.uniform(-0.15, 0.15, len(seeds)), shown, s=8, color="0.6", zorder=1)
            if floor is not None and s["metric_mean"] < floor:
                ax_metric.scatter(i, floor, marker="v", color=colour, zorder=2)
                ax_metric.annotate(f"mean {s['metric_mean']:.3g}\n± {s['metric_std']:.2g}", (i, floor),
                                   xytext=(6, 4), textcoords="offset points", fontsize="x-small")
            else:
                ax_metric.errorbar(i, s["metric_mean"], yerr=s["metric_std"], fmt="o", color=colour, capsize=3,
                                   zorder=2)
            ax_time.errorbar(i, s["seconds_mean"], yerr=s["seconds_std"], fmt="o", color=colour, capsize=3)
        if info["task"] == "classification":
            ax_metric.axhline(info["majority_rate"], color="k", linestyle=":", label="majority class")
        else:
            ax_metric.axhline(0.0, color="k", linestyle=":", label="train mean")
            top = max(s["metric_max"] for s in models.values() if s["n_ok"])
            ax_metric.set_ylim(floor - 0.05, max(top, 0.0) + 0.1)
        ax_metric.legend(loc="lower right", fontsize="small")
        title = f"{dataset}: n={info['n']}, d={info['d']}, k={info['k']}"
        ax_metric.set(title=title, ylabel=f"test {info['metric']}", xticks=x, xticklabels=[])
        ax_time.set(yscale="log", ylabel="fit time (s)", xticks=x)
        ax_time.set_xticklabels(names, rotation=60, ha="right", fontsize="small")
    seeds = len(result["config"]["seeds"])
    fig.suptitle(f"NN-LIFT (blue: fine-tuned, orange: tensor start) vs backprop and sklearn MLP, "
                 f"{result['config']['activation']}, mean ± std over {seeds} seeds (grey: each seed)")
    fig.tight_layout()
    png_path = atomic_write(out_dir / f"{stem}.png", lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    return json_path, png_path
