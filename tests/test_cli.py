"""The command line: fit / predict round trip on a CSV, demo on a tiny configuration, clear errors."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from nnlift.cli import app
from nnlift.datasets import make_teacher
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


def test_model_file_is_checked(tmp_path):
    np.savez(tmp_path / "other.npz", header=np.array(json.dumps({"format": "something-else"})))
    with pytest.raises(ValueError, match="not an nnlift model"):
        load_model(tmp_path / "other.npz")


def test_demo_writes_results_and_figure(tmp_path):
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--seeds", "1", "--d", "6", "--k", "2",
                                 "--n", "20000", "--quiet"])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "results.json").read_text())
    assert set(data["summary"]) == {"nnlift", "backprop"}
    assert (tmp_path / "results.png").read_bytes()[:4] == b"\x89PNG"
    assert "success rate" in result.output
