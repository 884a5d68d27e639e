"""`nnlift reproduce NAME`: every registered study has the study interface; one runs end to end."""

import importlib
import json

import pytest
from typer.testing import CliRunner

from nnlift.cli import app
from nnlift.reproduce import STUDIES


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_every_registered_study_has_the_interface(name):
    module = importlib.import_module(f"nnlift.reproduce.{STUDIES[name][0]}")
    assert isinstance(module.CLAIM, str) and len(module.CLAIM) > 20
    assert all(callable(getattr(module, f)) for f in ("run", "save", "report"))


def test_reproduce_command_runs_a_fast_study(tmp_path):
    result = CliRunner().invoke(app, ["reproduce", "steepest-margin", "--fast", "--quiet", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in tmp_path.iterdir())
    assert any(n.endswith(".png") for n in written) and any(n.endswith(".json") for n in written)
    json.loads(next(p for p in tmp_path.iterdir() if p.suffix == ".json").read_text())
    assert "steepest-margin" in result.output
