"""The shared progress report: a bar on an interactive terminal, timestamped lines on any other stream."""

import io
import re

import pytest
from rich.console import Console

from nnlift import _progress
from nnlift._progress import ProgressReport, say

STAMP = r"\d\d:\d\d:\d\d "


def _plain():
    return Console(file=io.StringIO(), force_terminal=False)


def _terminal():
    return Console(file=io.StringIO(), force_terminal=True, force_interactive=True, width=100)


def _run(console, steps=20, total=20, verbose=1):
    with ProgressReport("work", total, verbose, unit="items", console=console) as report:
        for step in range(steps):
            report.advance(f"loss {step}")
        report.log("a line of the caller's")
        report.finish("all done")
    return console.file.getvalue()


def test_plain_stream_gets_a_start_line_the_callers_lines_and_the_final_status_timestamped():
    lines = _run(_plain()).splitlines()
    assert re.fullmatch(STAMP + r"work: started, 0/20 items", lines[0])
    assert re.fullmatch(STAMP + r"a line of the caller's", lines[-2])
    assert re.fullmatch(STAMP + r"work: all done \(\d+\.\d s\)", lines[-1])
    assert len(lines) == 3


def test_plain_stream_gets_a_line_per_tenth_of_the_work_no_more_often_than_the_gap(monkeypatch):
    monkeypatch.setattr(_progress, "_MIN_GAP", 0.0)
    lines = _run(_plain(), steps=20, total=20).splitlines()
    progress = [line for line in lines if re.fullmatch(STAMP + r"work: \d+/20 items, loss \d+, \d+\.\d s", line)]
    assert [line.split()[2] for line in progress] == [f"{2 * i}/20" for i in range(1, 11)]


def test_plain_stream_gets_a_heartbeat_line_on_slow_work(monkeypatch):
    monkeypatch.setattr(_progress, "_HEARTBEAT", 0.0)
    lines = _run(_plain(), steps=3, total=1000).splitlines()
    assert [line.split()[2] for line in lines[1:4]] == ["1/1000", "2/1000", "3/1000"]


def test_terminal_gets_a_bar_and_the_final_status_without_timestamps():
    out = _run(_terminal())
    assert "20/20" in out and "loss 19" in out
    assert "work: all done (" in out and "a line of the caller's" in out
    assert not re.search(STAMP, out)


@pytest.mark.parametrize("console", [_plain, _terminal])
def test_verbose_zero_is_silent(console):
    assert _run(console(), verbose=0) == ""
    quiet = console()
    say("nothing", 0, quiet)
    assert quiet.file.getvalue() == ""


def test_default_stream_is_stderr(capsys):
    with ProgressReport("work", 2, 1) as report:
        report.advance()
        report.finish("done")
    captured = capsys.readouterr()
    assert captured.out == "" and "work: done (" in captured.err
