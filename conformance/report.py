"""Reports for machines: the JSON report (versioned schema), the overall verdict, the plots.

The JSON report follows ``conformance/schema/report.schema.json`` (``schema_version`` "1.1"); it is
rewritten after every port, so an interrupted run keeps the ports already checked
(``"complete": false`` until the end). The terminal table and report.md are
:mod:`conformance.report_text`.
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

from .results import STATUSES, PortResult

SCHEMA_VERSION = "1.1"
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
    """(verdict, exit code): any fail -> not conformant (1); else any port that could not be set
    up or had nothing judged, or no port passing -> error (2); else conformant (0)."""
    if any(r.verdict == "fail" for r in results):
        return "not conformant", 1
    if any(r.verdict in ("error", "not_judged") for r in results):
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
    counts = {v: sum(1 for r in results if r.verdict == v) for v in STATUSES}
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
