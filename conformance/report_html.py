"""report.html: one self-contained page for a person (inline CSS, plots as data URIs, no script).

It shows what report.md shows, laid out to be read in a browser: the verdict, a table per dtype,
every listed failure with its scenario, mode, step, stage, coordinate, budget fraction and ulps,
the ranked causes with their explanations, the scenarios not judged or skipped with their reasons,
the notes and the plots. Nothing is fetched when the page is opened: a Content-Security-Policy
allows only inline styles and ``data:`` images. Every text, and above all every text that comes
from a port (its name, messages, output), passes through :func:`esc`, so a port cannot put markup
or script into the page.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from . import report_systematic as systematic
from .report_text import _fmt, cause_notes, dash_notes, figures, term_text
from .results import Failure, PortResult

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccc}h3{margin-bottom:.3em}
table{border-collapse:collapse;margin:.5em 0 1em}th,td{border:1px solid #ccc;padding:3px 7px;
text-align:left;vertical-align:top}th{background:#f3f3f3}td.num{text-align:right;
font-variant-numeric:tabular-nums}code{font-size:.92em}
.verdict{font-size:1.3em;padding:.5em .8em;border-radius:4px;display:inline-block}
.v-conformant,.pass{background:#dff3df}.v-not-conformant,.fail{background:#f9dcdc}
.v-error,.error,.not_judged{background:#fbeccc}.skip{background:#eee}
img{max-width:100%;border:1px solid #ddd}pre{white-space:pre-wrap;background:#f6f6f6;padding:.5em}
"""


def esc(s: object) -> str:
    """``s`` as inert HTML text: control characters shown as escapes, ``<&>"'`` escaped."""
    return html.escape(term_text(s), quote=True)


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], num: Sequence[int] = ()) -> str:
    """An HTML table; ``rows`` hold HTML already escaped, ``num`` the right-aligned columns."""
    out = ["<table><thead><tr>", *(f"<th>{esc(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for row in rows:
        cells = (f'<td class="num">{c}</td>' if i in num else f"<td>{c}</td>"
                 for i, c in enumerate(row))  # fmt: skip
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "".join(out) + "</tbody></table>"


def _port_row(r: PortResult) -> list[str]:
    fig = figures(r)
    ran = [s for s in r.scenarios if s.status != "skip"]
    note = r.stage or ""
    if r.likely_causes:
        note += f" / {r.likely_causes[0][0]}"
    if r.verdict in ("error", "not_judged", "skip"):
        note = r.message
    return [
        esc(r.name), f'<span class="{esc(r.verdict)}">{esc(r.verdict)}</span>',
        f"{r.count('pass')}/{len(ran)}", _fmt(fig["resync"]), _fmt(fig["ulps"]),
        _fmt(fig["free"]), str(r.unresolved), esc(note), f"{r.duration_s:.1f}",
    ]  # fmt: skip


def _dtype_tables(results: Sequence[PortResult]) -> list[str]:
    by_dtype: dict[str, list[PortResult]] = {}
    for r in results:
        by_dtype.setdefault(r.dtype, []).append(r)
    head = ("port", "verdict", "scenarios passed", "worst re-synced (x budget)", "params ulps",
            "worst free-running (x budget)", "unresolved", "stage / cause or reason", "s")  # fmt: skip
    out = ["<h2>Summary</h2>",
           "<p>Errors are fractions of the tolerance budget (&le; 1 passes) and ulps of the "
           "port's dtype at the reference value; figures are of judged comparisons only "
           "(- where none was judged).</p>"]  # fmt: skip
    for dt, rs in by_dtype.items():
        out.append(f"<h3>{esc(dt)}</h3>")
        out.append(_table(head, (_port_row(r) for r in rs), num=(2, 3, 4, 5, 6, 8)))
    return out


def _coordinate(f: Failure) -> str:
    if f.array is None and f.index is None:
        return "-"
    where = f"array {f.array}" if f.array is not None else ""
    if f.index is not None:
        where += f" [{', '.join(str(i) for i in f.index)}]"
    return esc(where.strip())


def _failure_rows(r: PortResult) -> list[list[str]]:
    rows = []
    for f in r.failures:
        rows.append([
            esc(f.scenario), esc(f.mode), "-" if f.step is None else str(f.step),
            esc(f.stage or "-"), esc(f.kind), _coordinate(f), _fmt(f.budget_fraction),
            _fmt(f.ulps), _fmt(f.port_value), _fmt(f.ref_value), esc(f.message),
        ])  # fmt: skip
    return rows


def _port_failures(r: PortResult) -> list[str]:
    out = [f'<h3 class="{esc(r.verdict)}">{esc(r.label)}: {esc(r.verdict)}</h3>',
           f"<p>{esc(r.message)}</p>"]  # fmt: skip
    d = r.diagnosis or {}
    items = []
    if d.get("stage"):
        items.append(f"first disagreeing stage: <b>{esc(d['stage'])}</b> "
                     f"({esc(d.get('stage_basis'))})")  # fmt: skip
    for k in ("side_effects", "nonfinite", "errors", "error"):
        if k in d:
            items.append(f"{esc(k)}: {esc(d[k])}")
    items += [esc(n) for n in cause_notes(r)]
    if items:
        out.append("<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>")
    if r.likely_causes:
        out.append("<p>Likely causes, most likely first:</p>")
        out.append(_table(("rank", "cause", "distance", "explanation"),
                          ([str(i), f"<b>{esc(c)}</b>", _fmt(s), esc(desc)]
                           for i, (c, s, desc) in enumerate(r.likely_causes, 1)),
                          num=(0, 2)))  # fmt: skip
    if r.failures:
        head = ("scenario", "mode", "step", "stage", "kind", "coordinate", "x budget", "ulps",
                "port value", "reference", "message")  # fmt: skip
        out.append(_table(head, _failure_rows(r), num=(2, 6, 7, 8, 9)))
    if r.failures_not_listed:
        out.append(f"<p>({r.failures_not_listed} further failures repeat a listed one or pass "
                   "the listing's limit: not listed)</p>")  # fmt: skip
    return out


def _scenario_sections(results: Sequence[PortResult]) -> list[str]:
    out: list[str] = []
    for status, title in (("not_judged", "Scenarios not judged"), ("skip", "Skipped scenarios")):
        rows = [[esc(r.label), esc(s.scenario), esc(s.reason or "-")]
                for r in results for s in r.scenarios if s.status == status]  # fmt: skip
        if rows:
            out += [f"<h2>{title} (reasons)</h2>", _table(("port", "scenario", "reason"), rows)]
    return out


def _plots(plots_dir: Path | None) -> list[str]:
    if plots_dir is None or not plots_dir.is_dir():
        return []
    out = []
    for png in sorted(plots_dir.glob("*.png")):
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        out.append(f'<figure><img alt="{esc(png.stem)}" src="data:image/png;base64,{data}">'
                   f"<figcaption>{esc(png.name)}</figcaption></figure>")  # fmt: skip
    return ["<h2>Plots</h2>", *out] if out else []


def render(
    report: dict[str, Any], results: Sequence[PortResult], plots_dir: Path | None = None
) -> str:
    """The page for ``report`` (the JSON report) and its ``results``; PNGs of ``plots_dir``
    embedded."""
    verdict = str(report["verdict"])
    summary = ", ".join(f"{k}: {v}" for k, v in report["summary"].items())
    out = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        "<title>setadam-conformance report: " + esc(verdict) + "</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>setadam-conformance report</h1>",
        f'<p id="verdict" class="verdict v-{esc(verdict.replace(" ", "-"))}">VERDICT: '
        f"<b>{esc(verdict)}</b> (exit code {esc(report['exit_code'])})</p>",
        f"<p>created {esc(report['created'])}; {esc(summary)}; {esc(report['duration_s'])} s"
        f"{'' if report['complete'] else '; <b>incomplete</b> (the run is going on or stopped)'}"
        "</p>",
        f"<p>command: <code>{esc(' '.join(map(str, report['command'])))}</code></p>",
    ]  # fmt: skip
    out += _dtype_tables(results)
    worst = report.get("worst_by_dtype", {})
    if worst:
        out += ["<h2>Worst judged error per dtype</h2>", _table(
            ("dtype", "x budget", "ulps", "port", "mode", "quantity", "step"),
            ([esc(dt), _fmt(_num(w["fraction"])), _fmt(_num(w["ulps"])), esc(w["port"]),
              esc(w["mode"]), esc(w["quantity"]), esc(w["step"])] for dt, w in worst.items()),
            num=(1, 2, 6))]  # fmt: skip
    if sys_rows := systematic.rows(results):  # the statistical verdict (conformance.systematic)
        out += ["<h2>Statistical verdict: systematic deviations</h2>",
                _table(systematic.HEAD, ([esc(c) for c in row] for row in sys_rows), num=(1, 2, 4))]  # fmt: skip
    bad = [r for r in results if r.verdict in ("fail", "error", "not_judged")]
    if bad:
        out.append("<h2>Failures, errors and ports not judged</h2>")
        for r in bad:
            out += _port_failures(r)
    out += _scenario_sections(results)
    notes = list(report["notes"]) + [f"{r.label}: {n}" for r in results for n in dash_notes(r)]
    if notes:
        out += ["<h2>Notes</h2><ul>", *(f"<li>{esc(n)}</li>" for n in notes), "</ul>"]
    out += _plots(plots_dir)
    for r in results:
        if r.output is not None:
            out.append(f"<h3>{esc(r.label)} wrote {r.output.bytes} bytes to stdout/stderr; "
                       f"the last:</h3><pre>{html.escape(r.output.tail[-2000:])}</pre>")  # fmt: skip
    return "\n".join(out) + "\n</body></html>\n"


def _num(x: Any) -> float | None:
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def write(
    path: Path, report: dict[str, Any], results: Sequence[PortResult], plots_dir: Path | None
) -> None:
    """Write the page atomically (a reader never sees half a page)."""
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(render(report, results, plots_dir), encoding="utf-8")
    tmp.replace(path)
