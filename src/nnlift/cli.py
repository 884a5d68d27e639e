"""Command line: `nnlift demo | fit | predict | reproduce <study>`."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import typer
from rich.console import Console

app = typer.Typer(help="NN-LIFT: two-layer networks trained by tensor decomposition, side by side with backprop.",
                  no_args_is_help=True, add_completion=False)
reproduce = typer.Typer(help="Reproductions of the studies: each regenerates a JSON of every number "
                        "and a PNG figure.", no_args_is_help=True)
app.add_typer(reproduce, name="reproduce")
console = Console()


@app.command()
def demo(out: Path = typer.Option(Path("nnlift-demo"), help="folder for results.json and results.png"),
         seeds: int = typer.Option(10, min=1, help="number of seeds (teachers)"),
         activation: str = typer.Option(None, help="teacher activation (default: relu)"),
         d: int = typer.Option(None, help="input dimension (default 10)"),
         k: int = typer.Option(None, help="hidden units (default 5)"),
         n: int = typer.Option(None, help="training rows per teacher (default 500000)"),
         weight_scale: float = typer.Option(None, help="norm of the teacher's first-layer columns (default 1)"),
         quiet: bool = typer.Option(False, "--quiet")) -> None:
    """NN-LIFT vs random-init backprop on planted teachers: success rate, excess risk, recovery, time."""
    from .reproduce.demo import DemoConfig, print_table, run, save

    given = {"activation": activation, "d": d, "k": k, "n": n, "weight_scale": weight_scale}
    config = DemoConfig(seeds=list(range(seeds)), **{key: v for key, v in given.items() if v is not None})
    result = run(config, verbose=0 if quiet else 1)
    print_table(result, console)
    json_path, png_path = save(result, out)
    console.print(f"wrote {json_path} and {png_path}")


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    """Columns of a CSV file with a header row, as arrays of strings."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if len(rows) < 2:
        raise typer.BadParameter(f"{path} needs a header row and at least one data row")
    header, body = rows[0], rows[1:]
    if any(len(r) != len(header) for r in body):
        raise typer.BadParameter(f"{path}: every row must have {len(header)} fields like the header")
    return dict(zip(header, np.array(body, dtype=str).T, strict=True))


def _numeric(columns: dict[str, np.ndarray], names: list[str], path: Path) -> np.ndarray:
    try:
        return np.column_stack([columns[name].astype(np.float64) for name in names])
    except ValueError as error:
        raise typer.BadParameter(f"{path}: feature columns must be numeric ({error}); encode or drop them") from None


@app.command()
def fit(data: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV file with a header row"),
        target: str = typer.Option(..., help="name of the target column"),
        hidden: int = typer.Option(..., min=1, help="number of hidden units (<= number of features)"),
        out: Path = typer.Option(Path("model.npz"), help="where to save the model"),
        classify: bool = typer.Option(False, help="treat the target as class labels"),
        activation: str = typer.Option("sigmoid"), finetune: bool = typer.Option(True),
        score: str = typer.Option("gaussian", help="score function of the input density: gaussian, mixture, "
                                  "learned, student_t, laplace, uniform or multivariate_t"),
        two_pass: bool = typer.Option(False, help="fit the first layer in two passes over the rows (sketch, "
                                      "image) instead of the default eight"),
        seed: int = typer.Option(0), verbose: int = typer.Option(1)) -> None:
    """Fit NN-LIFT on DATA and save the network."""
    from .lift import LiftClassifier, LiftRegressor
    from .model_io import save_model

    columns = _read_csv(data)
    if target not in columns:
        raise typer.BadParameter(f"column {target!r} is not in {data} (columns: {list(columns)})")
    names = [c for c in columns if c != target]
    X = _numeric(columns, names, data)
    y = columns[target] if classify else _numeric(columns, [target], data)[:, 0]
    estimator_cls = LiftClassifier if classify else LiftRegressor
    from .scores import SCORE_NAMES

    _names(score, SCORE_NAMES, "--score")
    model = estimator_cls(hidden, activation=activation, finetune=finetune, score_function=score, random_state=seed,
                          verbose=verbose, cp_options="two_pass" if two_pass else None)
    model.fit(X, y)
    path = save_model(out, model, names, target)
    for message in model.diagnostics_["warnings"]:
        console.print(f"[yellow]warning:[/] {message}")
    console.print(f"saved {path} (training score {model.score(X, y):.4f})")


@app.command()
def predict(model: Path = typer.Argument(..., exists=True, dir_okay=False),
            data: Path = typer.Argument(..., exists=True, dir_okay=False),
            out: Path = typer.Option(None, help="CSV to write (default: print to stdout)")) -> None:
    """Predict with a saved model on the rows of DATA (its feature columns, in any order)."""
    from ._io import atomic_write
    from .model_io import load_model

    saved = load_model(model)
    columns = _read_csv(data)
    missing = [c for c in saved.feature_names if c not in columns]
    if missing:
        raise typer.BadParameter(f"{data} lacks the model's feature columns {missing}")
    predictions = saved.predict(_numeric(columns, saved.feature_names, data))
    text = "\n".join([saved.target, *map(str, predictions)]) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        atomic_write(out, lambda tmp: Path(tmp).write_text(text))
        console.print(f"wrote {len(predictions)} predictions to {out}")


def _names(value: str | None, allowed, option: str) -> list[str] | None:
    """A comma-separated option as a list, each name checked against `allowed`; None when not given."""
    if value is None:
        return None
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in allowed]
    if not names or unknown:
        raise typer.BadParameter(f"unknown {unknown or value!r}; use a comma-separated subset of "
                                 f"{','.join(allowed)}", param_hint=option)
    return names


@reproduce.command("real-data")
def real_data(out: Path = typer.Option(Path("benchmarks/results"), help="folder for real_data.json and .png "
                                       "(real_data_fast.* with --fast)"),
              seeds: int = typer.Option(None, min=1, help="seeds 0..N-1 (default 10, or 2 with --fast)"),
              fast: bool = typer.Option(False, "--fast", help="2 seeds, breast cancer and diabetes, 2 scores"),
              scores: str = typer.Option(None, help="comma-separated score functions "
                                         "(default gaussian,mixture,student_t,learned)"),
              datasets: str = typer.Option(None, help="comma-separated subset of breast_cancer,digits,diabetes"),
              quiet: bool = typer.Option(False, "--quiet")) -> None:
    """NN-LIFT with each score vs backprop and sklearn's MLP on digits, breast cancer and diabetes."""
    from .reproduce.real_data import DATASETS, RealDataConfig, print_table, run, save
    from .scores import SCORE_NAMES

    given = {"seeds": None if seeds is None else list(range(seeds)),
             "scores": _names(scores, SCORE_NAMES, "--scores"),
             "datasets": _names(datasets, list(DATASETS), "--datasets")}
    overrides = {key: value for key, value in given.items() if value is not None}
    config = RealDataConfig.fast(**overrides) if fast else RealDataConfig(**overrides)
    result = run(config, verbose=0 if quiet else 1)
    print_table(result, console)
    json_path, png_path = save(result, out)
    console.print(f"wrote {json_path} and {png_path} ({result['wall_time_s']:.0f} s)")


def _study_command(name: str, module_name: str, summary: str) -> None:
    """Register `nnlift reproduce NAME` for a study module with CLAIM / run / save / report."""

    def command(out: Path = typer.Option(Path("nnlift-results"), help="folder for NAME.json and NAME.png"),
                fast: bool = typer.Option(False, "--fast", help="the small configuration the tests use"),
                seed: int = typer.Option(0, help="random seed"),
                quiet: bool = typer.Option(False, "--quiet")) -> None:
        import importlib

        module = importlib.import_module(f".reproduce.{module_name}", __package__)
        console.print(f"[bold]{name}[/]: {module.CLAIM}")
        result = module.run(fast=fast, verbose=0 if quiet else 1, random_state=seed)
        console.print(module.report(result))
        paths = module.save(result, out)
        console.print("wrote " + ", ".join(str(path) for path in paths))

    command.__doc__ = summary
    reproduce.command(name)(command)


def _register_studies() -> None:
    from .reproduce import STUDIES

    for name, (module_name, summary) in STUDIES.items():
        _study_command(name, module_name, summary)


_register_studies()
