"""Command line: `nnlift demo | fit | predict | reproduce <study>`.

A user error is one line `error: ...` (exit 2) and Ctrl-C is `interrupted; nothing was written` (exit 130);
`nnlift --debug COMMAND` shows the traceback instead. Results are written whole, at the end of a command.
"""

from __future__ import annotations

import functools
import signal
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import typer
from rich.console import Console

from ._io import ensure_folder, existing_folder
from .activations import available_activations
from .scores import SCORE_NAMES

app = typer.Typer(help="NN-LIFT: two-layer networks trained by tensor decomposition, side by side with backprop.",
                  no_args_is_help=True, add_completion=False)
reproduce = typer.Typer(help="Reproductions of the studies: each regenerates a JSON of every number "
                        "and a PNG figure.", no_args_is_help=True)
app.add_typer(reproduce, name="reproduce")
console = Console()
state = {"debug": False}  # set by the app callback, as in typer's documentation

USER_ERRORS = (ValueError, TypeError, OSError, FloatingPointError, typer.BadParameter)
SMOKE_RUN = ("smoke run (--fast): a small configuration to check the study runs; its numbers are not a verdict — "
             "run without --fast to reproduce the claim")
QUIET_HELP = "no progress output"


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="show the full traceback of an error instead of one "
                                    "line")) -> None:
    """Options for every command (the app's help is above)."""
    state["debug"] = debug


def _one_line(error: BaseException) -> str:
    text = error.format_message() if isinstance(error, typer.BadParameter) else str(error)
    return " ".join(line.strip() for line in text.splitlines() if line.strip()) or type(error).__name__


def _clean_errors(command):
    """Run `command` with user errors as one line `error: ...` (exit 2), unless --debug, and Ctrl-C as
    `interrupted; nothing was written` (exit 130)."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            typer.echo("interrupted; nothing was written", err=True)
            raise typer.Exit(130) from None
        except USER_ERRORS as error:
            if state["debug"]:
                raise
            typer.echo(f"error: {_one_line(error)}", err=True)
            raise typer.Exit(2) from None

    return run


@contextmanager
def _writing() -> Iterator[None]:
    """Hold Ctrl-C off while results are written, so that an interrupt never leaves some of them written."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def _reported_warnings() -> Iterator[None]:
    """Record the warnings raised inside, then print each distinct message once as `warning: ...`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for message in dict.fromkeys(_one_line(w.message) for w in caught):
        typer.echo(f"warning: {message}", err=True)


def _smoke_banner(fast: bool) -> None:
    if fast:
        console.print(SMOKE_RUN, style="bold yellow", soft_wrap=True)


def _choice(value: str, allowed, option: str) -> str:
    """A one-name option, checked against `allowed`."""
    if value not in allowed:
        raise typer.BadParameter(f"unknown {value!r}; use one of {', '.join(allowed)}", param_hint=option)
    return value


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


@app.command()
@_clean_errors
def demo(out: Path = typer.Option(Path("nnlift-demo"), help="folder for results.json and results.png, created if "
                                  "missing"),
         seeds: int = typer.Option(10, min=1, help="number of seeds (teachers)"),
         activation: str = typer.Option(None, help="teacher activation (default: relu)"),
         d: int = typer.Option(None, help="input dimension (default 10)"),
         k: int = typer.Option(None, help="hidden units (default 5)"),
         n: int = typer.Option(None, help="training rows per teacher (default 500000)"),
         weight_scale: float = typer.Option(None, help="norm of the teacher's first-layer columns (default 1)"),
         quiet: bool = typer.Option(False, "--quiet", help=QUIET_HELP)) -> None:
    """NN-LIFT vs random-init backprop on planted teachers: success rate, excess risk, recovery, time."""
    from .reproduce.demo import DemoConfig, print_table, run, save

    given = {"activation": activation, "d": d, "k": k, "n": n, "weight_scale": weight_scale}
    config = DemoConfig(seeds=list(range(seeds)), **{key: v for key, v in given.items() if v is not None})
    result = run(config, verbose=0 if quiet else 1)
    print_table(result, console)
    with _writing():
        json_path, png_path = save(result, ensure_folder(out))
    console.print(f"wrote {json_path} and {png_path}")


def _check_classes(labels: np.ndarray, target: str) -> None:
    """--classify needs class labels; numbers with a fractional part (sklearn's "continuous" target) are not."""
    from sklearn.utils.multiclass import type_of_target

    try:
        values = labels.astype(np.float64)
    except ValueError:  # text labels are classes
        return
    if type_of_target(values) == "continuous":
        raise ValueError(f"--classify needs class labels but column {target!r} is continuous "
                         f"({len(np.unique(values))} distinct values); drop --classify for regression")


def _training_data(data: Path, target: str, classify: bool) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Feature names, X and y of a training CSV; y as text labels with --classify."""
    from ._csv import read_header, read_table

    names = [name for name in read_header(data) if name != target]
    X, y = read_table(data, names, target, text_target=classify)
    if classify:
        _check_classes(y, target)
    return names, X, y


@app.command()
@_clean_errors
def fit(data: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV file with a header row; every "
                                    "feature cell a finite number"),
        target: str = typer.Option(..., help="name of the target column; every other column is a feature"),
        hidden: int = typer.Option(..., min=1, help="number of hidden units (<= number of features)"),
        out: Path = typer.Option(Path("model.npz"), help="where to save the model; its folder must exist"),
        classify: bool = typer.Option(False, help="treat the target as class labels"),
        activation: str = typer.Option("sigmoid", help="activation of the hidden units: "
                                       f"{', '.join(available_activations())}"),
        finetune: bool = typer.Option(True, help="fine-tune every weight from the tensor start (L-BFGS); "
                                      "--no-finetune keeps the start"),
        score: str = typer.Option("gaussian", help="score function of the input density: gaussian, mixture, "
                                  "learned, student_t, laplace, uniform or multivariate_t"),
        two_pass: bool = typer.Option(False, help="fit the first layer in two passes over the rows (sketch, "
                                      "image) instead of the default eight"),
        seed: int = typer.Option(0, help="random seed of every random choice in the fit"),
        verbose: int = typer.Option(1, help="0: quiet; 1: log each step of the fit on stderr")) -> None:
    """Fit NN-LIFT on DATA and save the network."""
    from .lift import LiftClassifier, LiftRegressor
    from .model_io import save_model

    _choice(activation, available_activations(), "--activation")
    _choice(score, SCORE_NAMES, "--score")
    existing_folder(out)
    names, X, y = _training_data(data, target, classify)
    estimator_cls = LiftClassifier if classify else LiftRegressor
    model = estimator_cls(hidden, activation=activation, finetune=finetune, score_function=score, random_state=seed,
                          verbose=verbose, cp_options="two_pass" if two_pass else None)
    with _reported_warnings():
        model.fit(X, y)
    training = model.score(X, y)
    with _writing():
        path = save_model(out, model, names, target)
    console.print(f"saved {path} (training {'accuracy' if classify else 'R²'} {training:.4f})")


@app.command()
@_clean_errors
def predict(model: Path = typer.Argument(..., exists=True, dir_okay=False, help="model file written by `nnlift "
                                         "fit`"),
            data: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV file with a header row and the "
                                        "model's feature columns, in any order (other columns are ignored)"),
            out: Path = typer.Option(None, help="CSV to write (default: print to stdout); its folder must exist")
            ) -> None:
    """Predict with a saved model on the rows of DATA (its feature columns, in any order)."""
    from ._csv import read_table
    from ._io import atomic_write
    from .model_io import load_model

    saved = load_model(model)
    X, _ = read_table(data, saved.feature_names)
    predictions = saved.predict(X)
    text = "\n".join([saved.target, *map(str, predictions)]) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    with _writing():
        atomic_write(out, lambda tmp: Path(tmp).write_text(text))
    console.print(f"wrote {len(predictions)} predictions to {out}")


@reproduce.command("real-data")
@_clean_errors
def real_data(out: Path = typer.Option(Path("nnlift-results"), help="folder for real_data.json and .png "
                                       "(real_data_fast.* with --fast), created if missing"),
              seeds: int = typer.Option(None, min=1, help="seeds 0..N-1 (default 10, or 2 with --fast)"),
              fast: bool = typer.Option(False, "--fast", help="smoke run: 2 seeds, breast cancer and diabetes, "
                                        "2 scores"),
              scores: str = typer.Option(None, help="comma-separated score functions "
                                         "(default gaussian,mixture,student_t,learned)"),
              datasets: str = typer.Option(None, help="comma-separated subset of breast_cancer,digits,diabetes"),
              quiet: bool = typer.Option(False, "--quiet", help=QUIET_HELP)) -> None:
    """NN-LIFT with each score vs backprop and sklearn's MLP on digits, breast cancer and diabetes."""
    from .reproduce.real_data import DATASETS, RealDataConfig, print_table, run, save

    given = {"seeds": None if seeds is None else list(range(seeds)),
             "scores": _names(scores, SCORE_NAMES, "--scores"),
             "datasets": _names(datasets, list(DATASETS), "--datasets")}
    overrides = {key: value for key, value in given.items() if value is not None}
    config = RealDataConfig.fast(**overrides) if fast else RealDataConfig(**overrides)
    result = run(config, verbose=0 if quiet else 1)
    result["smoke_run"] = fast
    _smoke_banner(fast)
    print_table(result, console)
    _smoke_banner(fast)
    with _writing():
        json_path, png_path = save(result, ensure_folder(out))
    console.print(f"wrote {json_path} and {png_path} ({result['wall_time_s']:.0f} s)")


def _study_command(name: str, module_name: str, summary: str) -> None:
    """Register `nnlift reproduce NAME` for a study module with CLAIM / run / save / report."""

    def command(out: Path = typer.Option(Path("nnlift-results"), help="folder for the study's JSON and PNG, "
                                         "created if missing"),
                fast: bool = typer.Option(False, "--fast", help="smoke run: the small configuration the tests use"),
                seed: int = typer.Option(0, help="random seed"),
                quiet: bool = typer.Option(False, "--quiet", help=QUIET_HELP)) -> None:
        import importlib

        module = importlib.import_module(f".reproduce.{module_name}", __package__)
        console.print(f"[bold]{name}[/]: {module.CLAIM}")
        result = module.run(fast=fast, verbose=0 if quiet else 1, random_state=seed)
        result["smoke_run"] = fast
        _smoke_banner(fast)
        console.print(module.report(result))
        _smoke_banner(fast)
        with _writing():
            paths = module.save(result, ensure_folder(out))
        console.print("wrote " + ", ".join(str(path) for path in paths))

    command.__doc__ = summary
    reproduce.command(name)(_clean_errors(command))


def _register_studies() -> None:
    from .reproduce import STUDIES

    for name, (module_name, summary) in STUDIES.items():
        _study_command(name, module_name, summary)


_register_studies()
