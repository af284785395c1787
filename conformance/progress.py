"""The terminal's progress bar and summary table: rich on a terminal, plain text otherwise.

rich draws them when the stream is a terminal and ``CI`` is not set to true (and ``--no-progress``
was not given, for the bar); otherwise :class:`conformance.batch.Progress` prints plain lines and
the table is :func:`conformance.report_text.table`. Port text reaches rich as plain
:class:`rich.text.Text`, never as markup, so a port's name cannot style or hide terminal output.
The verdict line is printed by the caller, always as plain text, last.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import IO, Any

from . import report_text as text
from .results import PortResult

_VERDICT_STYLE = {"pass": "green", "FAIL": "bold red", "error": "yellow", "not judged": "yellow"}


def use_rich(stream: IO[str] | Any) -> bool:
    """Whether to draw with rich on ``stream``: a terminal, not under ``CI=true``, rich there."""
    if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
        return False
    try:
        if not stream.isatty():
            return False
        import rich  # noqa: F401
    except (AttributeError, ValueError, ImportError):
        return False
    return True


class RichProgress:
    """rich's progress bar on stderr: ports done of all, elapsed time, the port and scenario now
    running; a failing port is also printed above the bar as it finishes."""

    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            SpinnerColumn(), TextColumn("ports"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("{task.fields[now]}", markup=False),
            console=Console(stderr=True), transient=True,
        )  # fmt: skip
        self._task = self._progress.add_task("ports", total=max(total, 1), now="")
        self._progress.start()

    def scenario(self, label: str, name: str) -> None:
        self._progress.update(self._task, now=f"{text.term_text(label)} · {name}")

    def finish(self, r: PortResult) -> None:
        from rich.text import Text

        self._progress.advance(self._task)
        if r.verdict == "fail":
            self._progress.console.print(Text(f"{text.term_text(r.label)}: FAIL", "bold red"))

    def close(self) -> None:
        self._progress.stop()


def print_table(results: Sequence[PortResult]) -> None:
    """The summary table on stdout: rich's on a terminal, else the plain-text one."""
    if not use_rich(sys.stdout):
        print(text.table(results))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    body, notes = text.table_rows(results)
    t = Table(*text.TABLE_HEAD, title="setadam-conformance")
    for row in body:
        t.add_row(
            *(Text(c, _VERDICT_STYLE.get(c, "") if i == 2 else "") for i, c in enumerate(row))
        )
    console = Console()
    console.print(t)
    for n in notes:
        console.print(Text(n))
