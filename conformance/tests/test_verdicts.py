"""A verdict never overstates: nothing judged is never "pass", figures come from judged
comparisons only, unresolved coordinates are counted, every failure is listed, port text is
escaped in the reports.

The ports are an outside implementer's: NumPy SET-Adam written from the formulas, and torch
optimizers loaded by ``check MODULE:ATTR`` (conformance/tests/misbehaving).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conformance.cli import main
from conformance.interface import PortState
from conformance.runner import check_port
from conformance.tests import _numpy_ports as P


class MomentsInItsOwnUnits(P.NumpySETAdam):
    """Right parameters; its state() shows v in its own units (scaled by 1e6), as a third-party
    optimizer may: the harness measures it but, told not to assume the convention, must not
    judge it nor quote it as the port's error."""

    def state(self) -> PortState | None:
        st = super().state()
        assert st is not None and st.v is not None
        return PortState(st.step, st.m, tuple(1e6 * a for a in st.v))


class TakesStateKeepsItToItself(P.NumpySETAdam):
    """Takes a given state in reset() (so it is re-synced) but never reports its own: its m and
    v cannot be compared, and the report must say so rather than imply they were."""

    def state(self) -> PortState | None:
        return None


def test_state_taken_but_not_reported_is_said_not_compared() -> None:
    from conformance.scenario_notes import UNREAD_STATE

    r = check_port(lambda cfg: TakesStateKeepsItToItself(cfg), "setadam", scenarios=["normal"],
                   quick=True)  # fmt: skip
    (s,) = r.scenarios
    assert s.status == "pass", s.reason
    assert set(s.resync) == {"params"} or "m" not in s.resync, s.resync
    assert UNREAD_STATE in s.notes, s.notes
    r2 = check_port(lambda cfg: P.NumpySETAdam(cfg), "setadam", scenarios=["normal"], quick=True)
    assert UNREAD_STATE not in r2.scenarios[0].notes  # a port that reports its state: no note


def _last(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    out = capsys.readouterr().out
    return out, out.strip().splitlines()[-1]


def test_unjudged_state_is_not_the_ports_worst_error() -> None:
    r = check_port(lambda cfg: MomentsInItsOwnUnits(cfg), "setadam", scenarios=["normal"],
                   quick=True, judge_state=False)  # fmt: skip
    assert r.verdict == "pass", r.message
    worst = r.worst_fraction()
    assert worst is not None and worst <= 1.0, worst
    from conformance.report_text import verdict_line

    line = verdict_line([r])
    x = float(re.search(r"worst judged error ([0-9.e+-]+) x budget", line).group(1))  # type: ignore[union-attr]
    assert x <= 1.0, line
    # what was measured and not judged is still in the report, marked so
    reported = r.to_dict()["reported"]["resync"]
    assert reported["v"]["judged"] is False and reported["v"]["fraction"] > 1e3


def test_a_closed_loop_without_resync_is_not_judged_and_not_conformant(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The issue's case: a port whose state cannot be re-synced, on a closed-loop scenario."""
    pytest.importorskip("torch")
    code = main(["check", "conformance.tests.misbehaving.quirks:HiddenStateAdam", "--framework",
                 "torch", "--algorithm", "adam", "--scenario", "quadratic", "--no-progress",
                 "--report", str(tmp_path)])  # fmt: skip
    out, last = _last(capsys)
    assert code == 2, out
    assert last.startswith("VERDICT: error") and "nothing judged" in last, last
    rep = json.loads((tmp_path / "report.json").read_text())
    port = rep["ports"][0]
    assert port["verdict"] == "not_judged" and port["worst_fraction"] is None
    assert port["scenarios"][0]["status"] == "not_judged"
    assert "closed loop" in port["scenarios"][0]["reason"]
    row = next(ln for ln in out.splitlines() if ln.startswith("conformance.tests"))
    assert "not judged" in row and " - " in row  # no figure where nothing was compared
    assert "resync -:" in out  # and a note saying why


def test_the_table_shows_dashes_with_a_reason_for_what_was_not_compared(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    code = main(["check", "conformance.tests.misbehaving.quirks:HiddenStateAdam", "--framework",
                 "torch", "--algorithm", "adam", "--scenario", "normal", "--scenario", "quadratic",
                 "--no-progress", "--report", str(tmp_path)])  # fmt: skip
    out, _ = _last(capsys)
    assert code == 0, out
    row = next(ln for ln in out.splitlines() if ln.startswith("conformance.tests"))
    cells = row.split()
    assert cells[4:6] == ["-", "-"], row  # resync and params ulps: never compared
    assert "resync -: no re-synced comparison was judged" in out
    md = (tmp_path / "report.md").read_text()
    assert "Scenarios not judged" in md and "quadratic" in md


def test_unresolved_coordinates_are_counted_and_shown(tmp_path: Path) -> None:
    """float16 cannot resolve eps = 1e-8: those coordinates neither pass nor fail, and the
    report says how many there were."""
    r = check_port(lambda cfg: P.NumpySETAdam(cfg, "float16"), "setadam",
                   scenarios=["normal"], quick=True, dtype="float16")  # fmt: skip
    assert r.unresolved > 0
    assert r.to_dict()["unresolved"] == r.unresolved
    from conformance.report_text import table

    row = table([r]).splitlines()[2]
    assert f" {r.unresolved} " in f" {row} ", row


def test_every_failure_is_listed_grouped_by_scenario(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    code = main(["check", "conformance.wrong_ports.torch_ports:EpsOutsideSqrt", "--framework",
                 "torch", "--algorithm", "setadam", "--quick", "--scenario", "normal",
                 "--scenario", "tiny_gradients", "--no-progress", "--report", str(tmp_path)])  # fmt: skip
    out, _ = _last(capsys)
    assert code == 1
    rep = json.loads((tmp_path / "report.json").read_text())
    failures = rep["ports"][0]["failures"]
    assert {f["scenario"] for f in failures} == {"normal", "tiny_gradients"}
    for name in ("normal", "tiny_gradients"):
        assert f"  scenario {name}:" in out, out
    listed = [ln for ln in out.splitlines() if ln.startswith("    ") and "[" in ln]
    assert len(listed) == len(failures), out


def test_port_text_is_escaped_in_the_markdown_report(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    from conformance.tests.misbehaving.ports import MARKUP

    code = main(["check", "conformance.tests.misbehaving.ports:HtmlInMessage", "--framework",
                 "torch", "--algorithm", "adam", "--quick", "--scenario", "normal",
                 "--no-progress", "--report", str(tmp_path)])  # fmt: skip
    assert code == 1
    md = (tmp_path / "report.md").read_text()
    rep = json.loads((tmp_path / "report.json").read_text())
    assert MARKUP in rep["ports"][0]["failures"][0]["message"]  # the JSON keeps it verbatim
    for raw in ("<img", "<script", "![pwned](", "**bold**"):
        assert raw not in md, raw
    assert "&lt;img" in md and r"\!\[pwned\]" in md  # the text is there, inert


def test_terminal_text_cannot_fake_a_verdict_line() -> None:
    from conformance.report_text import term_text

    assert "\n" not in term_text("boom\nVERDICT: conformant\x1b[2J")
    assert "\\x1b" in term_text("\x1b[2J")


def _summary(r: Any) -> dict[str, Any]:
    return {s.scenario: s.status for s in r.scenarios}


def test_a_port_that_hangs_lists_the_scenarios_it_never_ran() -> None:
    P.Hangs.release.clear()
    try:
        r = check_port(lambda cfg: P.Hangs(cfg), "setadam", scenarios=["normal", "zero_layers"],
                       quick=True, timeout_s=0.5)  # fmt: skip
    finally:
        P.Hangs.release.set()
    assert r.verdict == "fail"
    st = _summary(r)
    assert st["normal"] == "fail" and st["zero_layers"] == "not_judged"
    assert next(s for s in r.scenarios if s.scenario == "zero_layers").reason.startswith("not run")


def test_statuses_are_the_documented_ones() -> None:
    from conformance.report import SCHEMA_PATH
    from conformance.results import STATUSES

    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema["$defs"]["scenario"]["properties"]["status"]["enum"] == list(STATUSES)
    assert np.isin(list(STATUSES), schema["$defs"]["port"]["properties"]["verdict"]["enum"]).all()


def test_the_one_line_cause_names_a_tie_as_a_tie_and_an_unexplained_port_as_such() -> None:
    from conformance.results import PortResult
    from conformance.runner import cause_phrase

    causes = [("no_bias_correction1", 0.0, "a"), ("no_down_translating", 0.0, "b")]
    tie = PortResult("p", "setadam", "float64", "cpu", likely_causes=causes,
                     diagnosis={"tied": ["no_bias_correction1", "no_down_translating"]})  # fmt: skip
    assert cause_phrase(tie) == "likely causes (tied): no_bias_correction1, no_down_translating"
    one = PortResult("p", "setadam", "float64", "cpu", likely_causes=causes[:1], diagnosis={})
    assert cause_phrase(one) == "likely cause: no_bias_correction1"
    none = PortResult("p", "setadam", "float64", "cpu",
                      diagnosis={"no_known_deviation": "no known deviation explains this; ..."})  # fmt: skip
    assert cause_phrase(none) == "no known deviation explains this"
    assert cause_phrase(PortResult("p", "setadam", "float64", "cpu")) == ""
