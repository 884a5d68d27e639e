"""The README's system-identification example runs as written and identifies the hidden layer."""

import re
from pathlib import Path

from nnlift.metrics import weight_recovery

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_block_after(heading: str) -> str:
    text = README.read_text()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_the_identify_example_recovers_the_hidden_layer(capsys):
    namespace: dict = {}
    exec(compile(_python_block_after("## System identification"), "README.md", "exec"), namespace)  # noqa: S102
    printed = capsys.readouterr().out
    assert "stopped: identified" in printed
    hidden, model = namespace["hidden"], namespace["model"]
    assert weight_recovery(hidden.weight.detach().numpy().T, model.first_layer_).min > 0.99
