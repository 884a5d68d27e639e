"""The command line: fit / predict round trip on a CSV, demo on a tiny configuration, user errors as one line,
warnings once, Ctrl-C cleanly, every option with help."""

import json
import os
import signal
import warnings

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from nnlift.cli import app
from nnlift.datasets import make_teacher
from nnlift.lift import LiftRegressor, NNLiftWarning
from nnlift.model_io import load_model

runner = CliRunner()


def _write_csv(path, X, y, target="y"):
    header = ",".join([f"x{i}" for i in range(X.shape[1])] + [target])
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", header=header, comments="")


def test_fit_then_predict_round_trip(tmp_path):
    t = make_teacher(30_000, 6, 2, "tanh", weight_scale=2.0, random_state=0, n_test=100)
    _write_csv(tmp_path / "train.csv", t.X, t.y)
    _write_csv(tmp_path / "test.csv", t.X_test, t.y_test)
    result = runner.invoke(app, ["fit", str(tmp_path / "train.csv"), "--target", "y", "--hidden", "2",
                                 "--activation", "tanh", "--out", str(tmp_path / "m.npz"), "--verbose", "0"])
    assert result.exit_code == 0, result.output
    assert "training R²" in result.output
    model = load_model(tmp_path / "m.npz")
    assert model.feature_names == [f"x{i}" for i in range(6)] and model.activation == "tanh"
    result = runner.invoke(app, ["predict", str(tmp_path / "m.npz"), str(tmp_path / "test.csv"),
                                 "--out", str(tmp_path / "pred.csv")])
    assert result.exit_code == 0, result.output
    predictions = np.loadtxt(tmp_path / "pred.csv", skiprows=1)
    np.testing.assert_allclose(predictions, model.predict(t.X_test))
    assert np.mean((predictions - t.y_test) ** 2) < 1.5 * t.noise_var


def test_fit_two_pass_flag(tmp_path, monkeypatch):
    import nnlift.lift.first_layer as first_layer

    seen = []
    original = first_layer.resolve_cp_options
    monkeypatch.setattr(first_layer, "resolve_cp_options", lambda options: seen.append(options) or original(options))
    t = make_teacher(20_000, 6, 2, "tanh", weight_scale=2.0, random_state=1)
    _write_csv(tmp_path / "train.csv", t.X, t.y)
    result = runner.invoke(app, ["fit", str(tmp_path / "train.csv"), "--target", "y", "--hidden", "2", "--two-pass",
                                 "--activation", "tanh", "--out", str(tmp_path / "m.npz"), "--verbose", "0"])
    assert result.exit_code == 0, result.output
    assert seen == ["two_pass"]


def test_fit_names_a_missing_target_column(tmp_path):
    _write_csv(tmp_path / "d.csv", np.zeros((5, 2)), np.zeros(5))
    result = runner.invoke(app, ["fit", str(tmp_path / "d.csv"), "--target", "price", "--hidden", "1"])
    assert result.exit_code != 0
    assert "price" in result.output


MODEL_ARRAYS = {"first_layer": np.ones((2, 1)), "bias": np.zeros(1), "coef": np.ones(1), "intercept": np.zeros(())}


def _garbage(path):
    path.write_bytes(np.random.default_rng(0).bytes(1000))


def _pickled(path):
    np.savez(path, header=np.array([{"format": "nnlift-two-layer/1"}], dtype=object), **MODEL_ARRAYS)


def _missing_arrays(path):
    np.savez(path, header=np.array(json.dumps({"format": "nnlift-two-layer/1"})))


def _other_format(path):
    np.savez(path, header=np.array(json.dumps({"format": "something-else"})), **MODEL_ARRAYS)


@pytest.mark.parametrize(("write", "reason"), [
    (_garbage, "not an .npz archive"), (_pickled, "holds Python objects"),
    (_missing_arrays, "no first_layer, bias, coef, intercept array"), (_other_format, "format 'something-else'")])
def test_load_model_names_a_foreign_file_and_never_suggests_unsafe_loading(tmp_path, write, reason):
    write(tmp_path / "other.npz")
    with pytest.raises(ValueError, match="not an nnlift model file") as error:
        load_model(tmp_path / "other.npz")
    assert reason in str(error.value)
    assert "allow_pickle" not in str(error.value) and "pickle.load" not in str(error.value)


def test_demo_creates_its_folder_and_writes_results_and_figure(tmp_path):
    out = tmp_path / "new" / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out), "--seeds", "1", "--d", "6", "--k", "2",
                                 "--n", "20000", "--quiet"])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())
    assert set(data["summary"]) == {"nnlift", "backprop"}
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"
    assert "success rate" in result.output


def _small_csv(path, bad_cell=None):
    """A 400-row regression CSV; `bad_cell` (text) replaces x3 in data row 17."""
    X = np.random.default_rng(0).standard_normal((400, 4))
    _write_csv(path, X, np.tanh(X).sum(axis=1))
    if bad_cell is not None:
        lines = path.read_text().splitlines()
        cells = lines[17].split(",")
        cells[3] = bad_cell
        lines[17] = ",".join(cells)
        path.write_text("\n".join(lines) + "\n")
    return path


def _fit_args(data, *options):
    return ["fit", str(data), "--target", "y", "--hidden", "2", "--verbose", "0", *options]


def _assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("error: "), result.output
    assert all(fragment in result.output for fragment in fragments), result.output


@pytest.mark.parametrize("cell", ["nan", "inf", ""])
def test_fit_and_predict_reject_a_non_finite_or_missing_cell(tmp_path, cell):
    clean = _small_csv(tmp_path / "clean.csv")
    bad = _small_csv(tmp_path / "bad.csv", cell)
    shown = repr(cell) if cell else "empty"
    result = runner.invoke(app, _fit_args(bad, "--out", str(tmp_path / "m.npz")))
    _assert_one_line_error(result, f"{bad}: row 17 (line 18), column 'x3' is {shown}; every feature cell")
    assert not (tmp_path / "m.npz").exists()
    result = runner.invoke(app, _fit_args(clean, "--out", str(tmp_path / "m.npz"), "--activation", "tanh"))
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["predict", str(tmp_path / "m.npz"), str(bad)])
    _assert_one_line_error(result, f"{bad}: row 17 (line 18), column 'x3' is {shown}; every feature cell")


def test_classify_on_a_continuous_target_is_a_clear_error(tmp_path):
    data = _small_csv(tmp_path / "d.csv")
    result = runner.invoke(app, _fit_args(data, "--classify"))
    _assert_one_line_error(result, "--classify needs class labels but column 'y' is continuous (400 distinct values)",
                           "drop --classify")


def test_classify_fits_text_labels_and_reports_training_accuracy(tmp_path):
    X = np.random.default_rng(0).standard_normal((2000, 4))
    labels = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    lines = ["x0,x1,x2,x3,y", *(",".join([*map(str, row), label]) for row, label in zip(X, labels, strict=True))]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, _fit_args(tmp_path / "d.csv", "--classify", "--out", str(tmp_path / "m.npz")))
    assert result.exit_code == 0, result.output
    assert "training accuracy" in result.output
    assert load_model(tmp_path / "m.npz").classes == ["no", "yes"]


@pytest.mark.parametrize(("options", "fragment"), [
    (["--hidden", "9"], "n_hidden=9 exceeds n_features=4"),
    (["--activation", "foo"], "unknown 'foo'"),
    (["--score", "a,b"], "unknown 'a,b'"),
    (["--out", "missing/m.npz"], "folder 'missing' does not exist; create it first"),
])
def test_user_errors_are_one_line(tmp_path, options, fragment):
    result = runner.invoke(app, _fit_args(_small_csv(tmp_path / "d.csv"), *options))
    _assert_one_line_error(result, fragment)


def test_a_garbage_model_is_one_line(tmp_path):
    _garbage(tmp_path / "m.npz")
    result = runner.invoke(app, ["predict", str(tmp_path / "m.npz"), str(_small_csv(tmp_path / "d.csv"))])
    _assert_one_line_error(result, "is not an nnlift model file (not an .npz archive)")
    assert "allow_pickle" not in result.output


def test_debug_reraises_for_the_traceback(tmp_path):
    result = runner.invoke(app, ["--debug", *_fit_args(_small_csv(tmp_path / "d.csv"), "--hidden", "9")])
    assert isinstance(result.exception, ValueError) and "n_hidden=9" in str(result.exception)


def test_each_warning_is_printed_once(tmp_path, monkeypatch):
    from sklearn.exceptions import ConvergenceWarning

    original = LiftRegressor.fit
    message = "NN-LIFT fit is not reliable: a test reason"

    def fit(self, X, y):
        original(self, X, y)
        self.diagnostics_["warnings"].append(message)
        for _ in range(2):
            warnings.warn(message, NNLiftWarning, stacklevel=2)
            warnings.warn("lbfgs failed to converge", ConvergenceWarning, stacklevel=2)
        return self

    monkeypatch.setattr(LiftRegressor, "fit", fit)
    result = runner.invoke(app, _fit_args(_small_csv(tmp_path / "d.csv"), "--out", str(tmp_path / "m.npz")))
    assert result.exit_code == 0, result.output
    assert result.output.count(message) == 1 and result.output.count("warning: lbfgs failed to converge") == 1


def test_ctrl_c_during_fit_writes_nothing(tmp_path, monkeypatch):
    def interrupted(self, X, y):
        raise KeyboardInterrupt

    monkeypatch.setattr(LiftRegressor, "fit", interrupted)
    result = runner.invoke(app, _fit_args(_small_csv(tmp_path / "d.csv"), "--out", str(tmp_path / "m.npz")))
    assert result.exit_code == 130 and result.output == "interrupted; nothing was written\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv"]


def test_ctrl_c_is_held_off_while_the_model_is_written(tmp_path, monkeypatch):
    import nnlift.model_io as model_io

    handlers = []
    original = model_io.save_model

    def save_model(*args):
        handlers.append(signal.getsignal(signal.SIGINT))
        os.kill(os.getpid(), signal.SIGINT)  # ignored while writing
        return original(*args)

    monkeypatch.setattr(model_io, "save_model", save_model)
    before = signal.getsignal(signal.SIGINT)
    result = runner.invoke(app, _fit_args(_small_csv(tmp_path / "d.csv"), "--out", str(tmp_path / "m.npz")))
    assert result.exit_code == 0, result.output
    assert handlers == [signal.SIG_IGN] and signal.getsignal(signal.SIGINT) == before
    assert load_model(tmp_path / "m.npz").target == "y"


def _commands(command, path=()):
    """Every command of a click group, with its path of names."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def test_every_parameter_of_every_command_has_help():
    commands = list(_commands(typer.main.get_command(app)))
    assert {("fit",), ("predict",), ("demo",), ("reproduce", "real-data"), ("reproduce", "saddles")} <= {
        path for path, _ in commands}
    missing = [(" ".join(path), param.name) for path, command in commands for param in command.params
               if not (getattr(param, "help", None) or "").strip()]
    assert not missing
