"""`nnlift reproduce NAME`: every registered study has the study interface; one runs end to end, a --fast run
says it is a smoke run, Ctrl-C writes nothing, results never go into the repository by default."""

import importlib
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from nnlift.cli import SMOKE_RUN, app
from nnlift.reproduce import STUDIES


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_every_registered_study_has_the_interface(name):
    module = importlib.import_module(f"nnlift.reproduce.{STUDIES[name][0]}")
    assert isinstance(module.CLAIM, str) and len(module.CLAIM) > 20
    assert all(callable(getattr(module, f)) for f in ("run", "save", "report"))


def test_reproduce_command_runs_a_fast_study_as_a_smoke_run(tmp_path):
    out = tmp_path / "new" / "results"
    result = CliRunner().invoke(app, ["reproduce", "steepest-margin", "--fast", "--quiet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in out.iterdir())
    assert any(n.endswith(".png") for n in written) and any(n.endswith(".json") for n in written)
    assert json.loads(next(p for p in out.iterdir() if p.suffix == ".json").read_text())["smoke_run"] is True
    assert "steepest-margin" in result.output
    assert " ".join(result.output.split()).count(SMOKE_RUN) == 2


def test_ctrl_c_during_a_study_writes_nothing(tmp_path, monkeypatch):
    module = importlib.import_module("nnlift.reproduce.steepest_margin")

    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "run", interrupted)
    out = tmp_path / "results"
    result = CliRunner().invoke(app, ["reproduce", "steepest-margin", "--quiet", "--out", str(out)])
    assert result.exit_code == 130 and result.output.endswith("interrupted; nothing was written\n")
    assert not out.exists()


@pytest.mark.parametrize("name", ["real-data", *sorted(STUDIES)])
def test_results_go_to_nnlift_results_by_default(name):
    command = typer.main.get_command(app).commands["reproduce"].commands[name]
    assert next(param.default for param in command.params if param.name == "out") == Path("nnlift-results")


def test_real_data_fast_is_a_smoke_run(tmp_path):
    out = tmp_path / "new"
    result = CliRunner().invoke(app, ["reproduce", "real-data", "--fast", "--seeds", "1", "--datasets",
                                      "breast_cancer", "--scores", "gaussian", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "real_data_fast.json").read_text())["smoke_run"] is True
    assert " ".join(result.output.split()).count(SMOKE_RUN) == 2
