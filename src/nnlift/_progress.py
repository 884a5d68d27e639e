"""Progress of long work whatever the terminal: a rich bar on an interactive terminal, log lines otherwise.

A rich bar only renders on an interactive terminal; in CI logs, behind `| tee` or in a notebook writing to a file
it shows nothing. There the same calls print plain timestamped lines on stderr instead: one at the start, one
when another tenth of the work is done (at most one per `_MIN_GAP` seconds, and one on the first step after
`_HEARTBEAT` seconds without a line), the caller's own lines, and the final status.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["ProgressReport", "say"]

_MIN_GAP = 5.0
_HEARTBEAT = 30.0
_STEPS = 10


def say(message: str, verbose: int, console: Console | None = None) -> None:
    """One line on stderr (or `console`) when verbose > 0: as is on a terminal, after the time of day otherwise."""
    if verbose <= 0:
        return
    console = console or Console(stderr=True)
    if console.is_interactive:
        console.print(message, markup=False, highlight=False)
    else:
        print(f"{time.strftime('%H:%M:%S')} {message}", file=console.file, flush=True)


class ProgressReport:
    """Context manager for `total` steps (`unit`, e.g. "epochs") of the work `description`; silent if verbose <= 0.

    `advance(status)` marks a step done, with a short status such as "loss 0.0123"; `log(message)` prints a line
    (above the bar on a terminal); `finish(message)` prints "description: message (elapsed s)", the final status.
    `done` counts the steps so far. `console` defaults to stderr.
    """

    def __init__(self, description: str, total: int, verbose: int, unit: str = "steps",
                 console: Console | None = None):
        self.description = description
        self.total = total
        self.unit = unit
        self.verbose = verbose
        self.console = console or Console(stderr=True)
        self.done = 0
        self.bar = None
        if verbose > 0 and self.console.is_interactive:
            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=self.console,
                                transient=True)
            self.task = self.bar.add_task(description, total=total, status="")

    def __enter__(self) -> ProgressReport:
        self.started = self.last_line = time.perf_counter()
        self.tenths = 0
        if self.bar is not None:
            self.bar.start()
        else:
            self.log(f"{self.description}: started, 0/{self.total} {self.unit}")
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def advance(self, status: str = "") -> None:
        """One more step done; on a plain stream, a line with the counts when one is due."""
        self.done += 1
        if self.bar is not None:
            self.bar.update(self.task, advance=1, status=status)
        elif self.verbose > 0 and self._line_due():
            self.tenths = self.done * _STEPS // max(self.total, 1)
            status = f", {status}" if status else ""
            self.log(f"{self.description}: {self.done}/{self.total} {self.unit}{status}, {self._elapsed():.1f} s")

    def log(self, message: str) -> None:
        """Print `message` as one line (it also counts as the latest progress line)."""
        say(message, self.verbose, self.console)
        self.last_line = time.perf_counter()

    def finish(self, message: str) -> None:
        """The final status, in words, with the elapsed time."""
        self.log(f"{self.description}: {message} ({self._elapsed():.1f} s)")

    def _line_due(self) -> bool:
        since = time.perf_counter() - self.last_line
        next_tenth = self.done * _STEPS // max(self.total, 1) > self.tenths
        return since >= _HEARTBEAT or (next_tenth and since >= _MIN_GAP)

    def _elapsed(self) -> float:
        return time.perf_counter() - self.started
