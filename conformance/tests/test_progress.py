"""Terminal output: rich only on a terminal outside CI, plain text otherwise; port text reaches
rich as text, never as markup."""

from __future__ import annotations

import io

import pytest

from conformance import progress, report_text
from conformance.results import PortResult


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_rich_only_on_a_terminal_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    assert progress.use_rich(_Tty()) and not progress.use_rich(io.StringIO())
    monkeypatch.setenv("CI", "true")
    assert not progress.use_rich(_Tty())


def _evil() -> PortResult:
    return PortResult(name="[red]evil[/red]\x1b[2J", algorithm="adam", dtype="float32",
                      device="cpu", verdict="fail", message="m")  # fmt: skip


def test_the_plain_table_when_stdout_is_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    progress.print_table([_evil()])
    assert capsys.readouterr().out == report_text.table([_evil()]) + "\n"


def test_the_rich_table_and_bar_show_port_text_literally(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(progress, "use_rich", lambda stream: True)
    progress.print_table([_evil()])
    out = capsys.readouterr().out
    assert "[red]evil[/red]\\x1b[2J" in out and "\x1b[2J" not in out and "FAIL" in out
    bar = progress.RichProgress(1)
    bar.scenario(_evil().label, "normal")
    bar.finish(_evil())
    bar.close()
    assert "[red]evil[/red]\\x1b[2J float32: FAIL" in capsys.readouterr().err
