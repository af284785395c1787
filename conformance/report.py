"""Reports: terminal summary table, JSON (versioned schema), Markdown, error-versus-step plots.

The JSON report follows ``conformance/schema/report.schema.json`` (``schema_version`` "1.0"); it is
rewritten after every port, so an interrupted run keeps the ports already checked
(``"complete": false`` until the end).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from .results import PortResult

SCHEMA_VERSION = "1.0"
SCHEMA_PATH = Path(__file__).with_name("schema") / "report.schema.json"


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def host_info() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "packages": {
            p: _version(p)
            for p in ("setadam-ref", "numpy", "torch", "jax", "jaxlib", "optax", "cupy-cuda13x")
        },
    }


def overall(results: Sequence[PortResult]) -> tuple[str, int]:
    """(verdict, exit code): any fail -> not conformant (1); else any error -> error (2)."""
    if any(r.verdict == "fail" for r in results):
        return "not conformant", 1
    if any(r.verdict == "error" for r in results):
        return "error", 2
    if not any(r.verdict == "pass" for r in results):
        return "error", 2
    return "conformant", 0


def worst_by_dtype(results: Sequence[PortResult]) -> dict[str, dict[str, Any]]:
    """Worst judged budget fraction per dtype over passing and failing ports (re-synced, free)."""
    out: dict[str, dict[str, Any]] = {}
    for r in results:
        for mode in ("resync", "free"):
            for q, w in r.worst(mode).items():
                cur = out.get(r.dtype)
                if cur is None or (w.fraction, w.ulps) > (cur["_f"], cur["_u"]):
                    out[r.dtype] = {
                        "_f": w.fraction,
                        "_u": w.ulps,
                        "fraction": _f(w.fraction),
                        "ulps": _f(w.ulps),
                        "port": r.name,
                        "mode": mode,
                        "quantity": q,
                        "step": w.step,
                    }
    for d in out.values():
        d.pop("_f")
        d.pop("_u")
    return out


def _f(x: float) -> float | str:
    if math.isfinite(x):
        return float(x)
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def clean(obj: Any) -> Any:
    """JSON-safe copy: non-finite floats as strings, tuples as lists, numpy scalars as Python."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, float) or hasattr(obj, "__float__"):
        try:
            return _f(float(obj))
        except (TypeError, ValueError):
            return str(obj)
    return str(obj)


def build(
    results: Sequence[PortResult],
    *,
    options: dict[str, Any],
    notes: Sequence[str],
    complete: bool,
    duration_s: float,
    series: bool = False,
) -> dict[str, Any]:
    verdict, code = overall(results) if results else ("error", 2)
    counts = {
        v: sum(1 for r in results if r.verdict == v) for v in ("pass", "fail", "error", "skip")
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": "setadam-conformance",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": list(sys.argv),
        "complete": complete,
        "verdict": verdict,
        "exit_code": code,
        "duration_s": round(duration_s, 3),
        "host": host_info(),
        "options": options,
        "notes": list(notes),
        "summary": {"ports": len(results), **counts},
        "worst_by_dtype": worst_by_dtype(results),
        "ports": [clean(r.to_dict(series)) for r in results],
    }


def write_json(path: Path, report: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1, allow_nan=False))
    tmp.replace(path)


def validate(report: dict[str, Any]) -> None:
    """Validate against the JSON schema (jsonschema needed); raises on a violation."""
    import jsonschema  # type: ignore[import-untyped,unused-ignore]

    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.validate(report, schema)


# ----------------------------------------------------------------------------- text


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return "inf" if x > 0 else "nan"
    if x == 0:
        return "0"
    return f"{x:.3g}"


def table(results: Sequence[PortResult]) -> str:
    """Plain-text summary table, one row per port and dtype."""
    head = (
        "port",
        "dtype",
        "verdict",
        "scen.",
        "resync",
        "params ulps",
        "free",
        "stage / note",
        "s",
    )
    rows = [head]
    for r in results:
        ran = [s for s in r.scenarios if s.status != "skip"]
        ok = sum(1 for s in ran if s.status == "pass")
        rs, fr = r.worst("resync"), r.worst("free")
        rs_f = max((w.fraction for w in rs.values()), default=0.0)
        rs_u = rs["params"].ulps if "params" in rs else 0.0
        fr_f = max((w.fraction for w in fr.values()), default=0.0)
        note = ""
        if r.verdict == "fail":
            note = r.stage or (r.failures[0].kind if r.failures else "")
            if r.likely_causes:
                note += f" ({r.likely_causes[0][0]})"
        elif r.verdict in ("error", "skip"):
            note = r.message[:40]
        rows.append(
            (
                r.name,
                r.dtype,
                r.verdict.upper() if r.verdict == "fail" else r.verdict,
                f"{ok}/{len(ran)}",
                _fmt(rs_f),
                _fmt(rs_u),
                _fmt(fr_f),
                note,
                f"{r.duration_s:.1f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def verdict_line(results: Sequence[PortResult], report_dir: Path | None = None) -> str:
    verdict, _ = overall(results) if results else ("error", 2)
    n = len(results)
    fails = [r.label for r in results if r.verdict == "fail"]
    errors = [r.label for r in results if r.verdict == "error"]
    worst = max((r.worst_fraction() for r in results if r.verdict == "pass"), default=0.0)
    where = f" [report: {report_dir}]" if report_dir else ""
    if verdict == "conformant":
        passed = sum(1 for r in results if r.verdict == "pass")
        return (
            f"VERDICT: conformant: {passed} of {n} port checks pass "
            f"(worst error {_fmt(worst)} x budget){where}"
        )
    if verdict == "not conformant":
        shown = ", ".join(fails[:4]) + (", ..." if len(fails) > 4 else "")
        return f"VERDICT: NOT conformant: {len(fails)} of {n} port checks fail: {shown}{where}"
    if not results:
        return "VERDICT: error: no port could be checked"
    return f"VERDICT: error: {len(errors)} of {n} port checks could not run: {', '.join(errors[:4])}{where}"


def markdown(report: dict[str, Any], results: Sequence[PortResult]) -> str:
    out = [
        "# setadam-conformance report",
        "",
        f"- created: {report['created']}",
        f"- verdict: **{report['verdict']}** (exit code {report['exit_code']})",
        f"- ports: {report['summary']}",
        f"- duration: {report['duration_s']} s",
        f"- complete: {report['complete']}",
        "",
        "Errors are given as fractions of the tolerance budget (<= 1 passes; docs: numerics/",
        "tolerance.md) and in ulps of the port's dtype at the reference value.",
        "",
        "## Summary",
        "",
        "| port | dtype | verdict | scenarios passed | worst re-synced (x budget) | params ulps | "
        "worst free-running (x budget) | stage / cause |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        ran = [s for s in r.scenarios if s.status != "skip"]
        ok = sum(1 for s in ran if s.status == "pass")
        rs, fr = r.worst("resync"), r.worst("free")
        note = r.stage or ""
        if r.likely_causes:
            note += f" / {r.likely_causes[0][0]}"
        out.append(
            f"| {r.name} | {r.dtype} | {r.verdict} | {ok}/{len(ran)} | "
            f"{_fmt(max((w.fraction for w in rs.values()), default=0.0))} | "
            f"{_fmt(rs['params'].ulps if 'params' in rs else 0.0)} | "
            f"{_fmt(max((w.fraction for w in fr.values()), default=0.0))} | {note} |"
        )
    out += ["", "## Worst error per dtype", "", "| dtype | x budget | ulps | port | mode | quantity |",
            "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for dt, w in report["worst_by_dtype"].items():
        out.append(
            f"| {dt} | {w['fraction']} | {w['ulps']} | {w['port']} | {w['mode']} | {w['quantity']} |"
        )
    bad = [r for r in results if r.verdict in ("fail", "error")]
    if bad:
        out += ["", "## Failures", ""]
        for r in bad:
            out += [f"### {r.label}: {r.verdict}", "", r.message, ""]
            if r.diagnosis:
                d = r.diagnosis
                if "first_failure" in d:
                    out.append(f"- first failure: `{json.dumps(d['first_failure'])}`")
                if d.get("stage"):
                    out.append(
                        f"- first disagreeing stage: **{d['stage']}** ({d.get('stage_basis')})"
                    )
                for k in ("side_effects", "nonfinite", "errors"):
                    if k in d:
                        out.append(f"- {k}: {d[k]}")
            for c, s, desc in r.likely_causes[:3]:
                out.append(f"- likely cause: **{c}** (distance {s:.3g}): {desc}")
            for f in r.failures[:8]:
                out.append(f"- `{f.scenario}` {f.mode} step {f.step} [{f.kind}] {f.message}")
            out.append("")
    if report["notes"]:
        out += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    skipped = sorted(
        {(s.scenario, s.reason) for r in results for s in r.scenarios if s.status == "skip"}
    )
    if skipped:
        out += ["", "## Skipped scenario/port combinations (reasons)", ""]
        reasons: dict[str, set[str]] = {}
        for name, why in skipped:
            reasons.setdefault(why, set()).add(name)
        for why, names in sorted(reasons.items()):
            out.append(f"- {why}: {', '.join(sorted(names))}")
    return "\n".join(out) + "\n"


def plots(results: Sequence[PortResult], outdir: Path) -> list[str]:
    """Error-versus-step plots (free-running), one PNG per dtype; returns notes."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ["matplotlib is not installed: plots skipped"]
    outdir.mkdir(parents=True, exist_ok=True)
    by_dtype: dict[str, list[PortResult]] = {}
    for r in results:
        by_dtype.setdefault(r.dtype, []).append(r)
    written = []
    for dt, rs in by_dtype.items():
        names = sorted({s.scenario for r in rs for s in r.scenarios if s.free_series})
        if not names:
            continue
        pick = [n for n in ("long_run", "rosenbrock", "mlp", "normal") if n in names][:2] or names[
            :2
        ]
        fig, axes = plt.subplots(len(pick), 2, figsize=(12, 3.6 * len(pick)), squeeze=False)
        for row, name in enumerate(pick):
            ax_f, ax_u = axes[row]
            for r in rs:
                for s in r.scenarios:
                    if s.scenario == name and s.free_series:
                        steps = range(1, len(s.free_series) + 1)
                        ax_f.plot(steps, [max(x, 1e-6) for x in s.free_series], label=r.name, lw=1)
                        ax_u.plot(steps, [max(x, 1e-3) for x in s.free_ulps], label=r.name, lw=1)
            judged = (
                "judged"
                if all(s.free_judged for r in rs for s in r.scenarios if s.scenario == name)
                else "report only (closed loop)"
            )
            ax_f.set_title(f"{name} ({dt}): worst params error / budget, free-running, {judged}")
            ax_u.set_title(f"{name} ({dt}): worst params error in ulps")
            ax_f.axhline(1.0, color="k", ls="--", lw=0.8)
            for ax in (ax_f, ax_u):
                ax.set_yscale("log")
                ax.set_xlabel("step")
        axes[0][1].legend(fontsize=6, loc="upper left")
        fig.tight_layout()
        path = outdir / f"error_vs_step_{dt}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(str(path))
    return [f"plot: {p}" for p in written]
