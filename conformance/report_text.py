"""Reports for people: the terminal table and failure listing, the verdict line, report.md.

Figures are of judged comparisons only; a column shows ``-`` where no comparison of its kind was
judged, and a note under the table says why. Every text that comes from a port (its name when it
is a third-party target, exception messages, output) is passed through :func:`term_text` for the
terminal (control characters shown as escapes, so a port cannot move the cursor or print a
line that looks like the verdict) and through :func:`md_text` for Markdown (HTML and Markdown
syntax escaped, so a port cannot put links, images or markup into the report).
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import report_systematic as systematic
from .report import overall
from .results import PortResult, ScenarioResult

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]()#!|~{}])")
#: a one-line listing of a further failure is cut at this many characters
ONE_LINE = 160


def term_text(s: object) -> str:
    """``s`` for a terminal: control characters (newlines, escapes) as visible escapes."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], str(s))


def md_text(s: object) -> str:
    """``s`` as inert Markdown text: HTML escaped, Markdown syntax escaped, one line."""
    text = html.escape(term_text(s), quote=False)
    return _MD_SPECIAL.sub(r"\\\1", text)


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if not math.isfinite(x):
        return "inf" if x > 0 else "nan"
    if x == 0:
        return "0"
    return f"{x:.3g}"


def _judged(s: ScenarioResult, mode: str) -> bool:
    return any(w.judged for w in (s.resync if mode == "resync" else s.free).values())


def figures(r: PortResult) -> dict[str, float | None]:
    """The table's figures of a port (None: no comparison of that kind was judged)."""
    rs, fr = r.worst("resync"), r.worst("free")
    return {
        "resync": max((w.fraction for w in rs.values()), default=None),
        "ulps": rs["params"].ulps if "params" in rs else None,
        "free": max((w.fraction for w in fr.values()), default=None),
    }


def dash_notes(r: PortResult) -> list[str]:
    """Why a figure of ``r`` is ``-``: one note per empty column."""
    ran = [s for s in r.scenarios if s.status != "skip"]
    if not ran or r.verdict in ("error", "skip"):
        return []
    out = []
    fig = figures(r)
    if fig["resync"] is None:
        whys = sorted({s.reason for s in ran if s.reason and not _judged(s, "resync")})
        why = f": {r.state_note}" if r.state_note else (f": {whys[0]}" if whys else "")
        out.append("resync -: no re-synced comparison was judged" + why)
    if fig["free"] is None:
        loops = [s.closed_loop for s in ran if s.steps]
        if loops and all(loops):
            out.append("free -: free-running ran in closed loops only (reported, not judged)")
        else:
            out.append("free -: no free-running comparison was judged")
    return out


def _scenario_count(r: PortResult) -> str:
    ran = [s for s in r.scenarios if s.status != "skip"]
    return f"{r.count('pass')}/{len(ran)}"


def _note(r: PortResult) -> str:
    if r.verdict == "fail":
        note = r.stage or (r.failures[0].kind if r.failures else "")
        if r.likely_causes:
            note += f" ({r.likely_causes[0][0]})"
        return note
    if r.verdict in ("error", "skip", "not_judged"):
        return term_text(r.message)[:40]
    nj = r.count("not_judged")
    return f"{nj} not judged" if nj else ""


#: the summary table's columns (the terminal's plain and rich tables)
TABLE_HEAD = ("port", "dtype", "verdict", "scen.", "resync", "params ulps", "free", "unres.",
              "stage / note", "s")  # fmt: skip


def table_rows(results: Sequence[PortResult]) -> tuple[list[tuple[str, ...]], list[str]]:
    """The summary table's rows (port text made terminal-safe) and the notes on ``-`` figures."""
    rows: list[tuple[str, ...]] = []
    notes = []
    for r in results:
        fig = figures(r)
        verdict = {"fail": "FAIL", "not_judged": "not judged"}.get(r.verdict, r.verdict)
        rows.append(
            (
                term_text(r.name), r.dtype, verdict, _scenario_count(r), _fmt(fig["resync"]),
                _fmt(fig["ulps"]), _fmt(fig["free"]), str(r.unresolved), _note(r),
                f"{r.duration_s:.1f}",
            )
        )  # fmt: skip
        notes += [f"note: {term_text(r.label)}: {n}" for n in dash_notes(r)]
    return rows, notes


def table(results: Sequence[PortResult]) -> str:
    """Plain-text summary table, one row per port and dtype, then the notes on ``-`` figures."""
    body, notes = table_rows(results)
    rows = [TABLE_HEAD, *body]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_HEAD))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines + notes)


def cause_notes(r: PortResult) -> list[str]:
    """What the diagnosis says besides the causes: ties, the evidence they rest on, the state,
    or that nothing known explains the port."""
    d = r.diagnosis or {}
    out = []
    if d.get("tied"):
        out.append("tie: " + ", ".join(d["tied"]))
    if d.get("cause_basis"):
        out.append(f"causes from {d['cause_basis']}")
    out += list(d.get("cause_notes", []))
    if d.get("no_known_deviation"):
        out.append(d["no_known_deviation"])
    if r.state_note:
        out.append(f"state: {r.state_note}")
    return out


def failure_listing(r: PortResult) -> list[str]:
    """Every failure of ``r``, grouped by scenario: the first in full, the others one line each."""
    out = [f"{term_text(r.label)}: {r.verdict}: {term_text(r.message)}"]
    for c, s, d in r.likely_causes[:3]:
        out.append(f"  likely cause: {c} (distance {s:.3g}): {d}")
    out += [f"  {term_text(n)}" for n in cause_notes(r)]
    if (line := systematic.summary_line(r)) is not None:  # the statistical verdict
        out.append(f"  {term_text(line)}")
    by_scenario: dict[str, list[str]] = {}
    for f in r.failures:
        step = f" step {f.step}" if f.step is not None else ""
        by_scenario.setdefault(f.scenario, []).append(
            f"{f.mode}{step} [{f.kind}{', ' + f.stage if f.stage else ''}] {term_text(f.message)}"
        )
    first = True
    for name, lines in by_scenario.items():
        out.append(f"  scenario {name}:")
        for line in lines:
            if first:
                out.append(f"    {line}")
                first = False
            else:
                out.append(f"    {line[:ONE_LINE]}{'...' if len(line) > ONE_LINE else ''}")
    if r.failures_not_listed:
        out.append(
            f"  ({r.failures_not_listed} further failures repeat a listed one or pass the "
            "listing's limit: not listed)"
        )
    return out


def verdict_line(results: Sequence[PortResult], report_dir: Path | None = None) -> str:
    verdict, _ = overall(results) if results else ("error", 2)
    n = len(results)
    where = f" [report: {report_dir}]" if report_dir else ""
    fails = [term_text(r.label) for r in results if r.verdict == "fail"]
    unjudged = [r for r in results if r.verdict in ("error", "not_judged")]
    skipped = sum(1 for r in results if r.verdict == "skip")
    if verdict == "conformant":
        passed = [r for r in results if r.verdict == "pass"]
        worst = max((w for r in passed if (w := r.worst_fraction()) is not None), default=None)
        extra = f"; {skipped} skipped (no scenario applies)" if skipped else ""
        return (
            f"VERDICT: conformant: {len(passed)} of {n} port checks pass "
            f"(worst judged error {_fmt(worst)} x budget){extra}{where}"
        )
    if verdict == "not conformant":
        shown = ", ".join(fails[:4]) + (", ..." if len(fails) > 4 else "")
        return f"VERDICT: NOT conformant: {len(fails)} of {n} port checks fail: {shown}{where}"
    if not results:
        return "VERDICT: error: no port could be checked"
    shown = "; ".join(f"{term_text(r.label)} ({term_text(r.message)[:200]})" for r in unjudged[:3])
    return f"VERDICT: error: {len(unjudged)} of {n} port checks not judged: {shown}{where}"


def _md_port_rows(results: Sequence[PortResult]) -> list[str]:
    out = []
    for r in results:
        fig = figures(r)
        note = r.stage or ""
        if r.likely_causes:
            note += f" / {r.likely_causes[0][0]}"
        if r.verdict in ("error", "not_judged", "skip"):
            note = r.message
        out.append(
            f"| {md_text(r.name)} | {r.dtype} | {r.verdict} | {_scenario_count(r)} | "
            f"{_fmt(fig['resync'])} | {_fmt(fig['ulps'])} | {_fmt(fig['free'])} | "
            f"{r.unresolved} | {md_text(note)} |"
        )
    return out


def _md_failures(r: PortResult) -> list[str]:
    out = [f"### {md_text(r.label)}: {r.verdict}", "", md_text(r.message), ""]
    d = r.diagnosis or {}
    if "first_failure" in d:
        out.append(f"- first failure: {md_text(json.dumps(d['first_failure']))}")
    if d.get("stage"):
        out.append(f"- first disagreeing stage: **{md_text(d['stage'])}** "
                   f"({md_text(d.get('stage_basis'))})")  # fmt: skip
    for k in ("side_effects", "nonfinite", "errors", "error"):
        if k in d:
            out.append(f"- {k}: {md_text(d[k])}")
    for c, s, desc in r.likely_causes[:3]:
        out.append(f"- likely cause: **{md_text(c)}** (distance {s:.3g}): {md_text(desc)}")
    out += [f"- {md_text(n)}" for n in cause_notes(r)]
    for f in r.failures:
        step = f" step {f.step}" if f.step is not None else ""  # a systematic failure has none
        out.append(f"- {md_text(f.scenario)} {f.mode}{step} [{f.kind}] {md_text(f.message)}")
    if r.failures_not_listed:
        out.append(f"- ({r.failures_not_listed} further failures not listed)")
    return out + [""]


def markdown(report: dict[str, Any], results: Sequence[PortResult]) -> str:
    out = [
        "# setadam-conformance report",
        "",
        f"- created: {report['created']}",
        f"- verdict: **{report['verdict']}** (exit code {report['exit_code']})",
        f"- ports: {md_text(report['summary'])}",
        f"- duration: {report['duration_s']} s",
        f"- complete: {report['complete']}",
        "",
        "Errors are given as fractions of the tolerance budget (<= 1 passes; docs: numerics/",
        "tolerance.md) and in ulps of the port's dtype at the reference value; figures are of",
        "judged comparisons only (- where none was judged).",
        "",
        "## Summary",
        "",
        "| port | dtype | verdict | scenarios passed | worst re-synced (x budget) | params ulps | "
        "worst free-running (x budget) | unresolved | stage / cause |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *_md_port_rows(results),
        "",
        "## Worst judged error per dtype",
        "",
        "| dtype | x budget | ulps | port | mode | quantity |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for dt, w in report["worst_by_dtype"].items():
        out.append(f"| {dt} | {w['fraction']} | {w['ulps']} | {md_text(w['port'])} | {w['mode']} "
                   f"| {w['quantity']} |")  # fmt: skip
    if sys_rows := systematic.rows(results):  # the statistical verdict (conformance.systematic)
        out += ["", "## Statistical verdict: systematic deviations", "",
                "Estimated relative bias of each port's step over all coordinates and re-synced",
                "steps, beyond the floor of legitimately rounded scalars (numerics/systematic.md).",
                "", "| " + " | ".join(systematic.HEAD) + " |",
                "| " + " | ".join("---" for _ in systematic.HEAD) + " |"]  # fmt: skip
        out += ["| " + " | ".join(md_text(c) for c in row) + " |" for row in sys_rows]
    bad = [r for r in results if r.verdict in ("fail", "error", "not_judged")]
    if bad:
        out += ["", "## Failures, errors and ports not judged", ""]
        for r in bad:
            out += _md_failures(r)
    notes = list(report["notes"]) + [f"{r.label}: {n}" for r in results for n in dash_notes(r)]
    if notes:
        out += ["", "## Notes", ""] + [f"- {md_text(n)}" for n in notes]
    out += _md_scenarios(results)
    outputs = [r for r in results if r.output is not None]
    if outputs:
        out += ["", "## What ports wrote to stdout/stderr (not shown in the terminal)", ""]
        for r in outputs:
            assert r.output is not None
            out.append(f"- {md_text(r.label)}: {r.output.bytes} bytes; last: "
                       f"{md_text(r.output.tail[-300:])}")  # fmt: skip
    return "\n".join(out) + "\n"


def _md_scenarios(results: Sequence[PortResult]) -> list[str]:
    """Every skipped and not-judged scenario with its reason, grouped by reason."""
    out: list[str] = []
    for status, title in (("not_judged", "Scenarios not judged"), ("skip", "Skipped scenarios")):
        reasons: dict[str, set[str]] = {}
        for r in results:
            for s in r.scenarios:
                if s.status == status:
                    reasons.setdefault(s.reason, set()).add(f"{r.label}: {s.scenario}")
        if reasons:
            out += ["", f"## {title} (reasons)", ""]
            for why, names in sorted(reasons.items()):
                out.append(f"- {md_text(why)}: {md_text(', '.join(sorted(names)))}")
    return out
