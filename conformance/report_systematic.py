"""The statistical verdict in the reports: one line per port (terminal) and one table row per port.

What :mod:`conformance.systematic` recorded in ``PortResult.systematic``: how many (scenario,
quantity) tests ran, how many found a systematic deviation, and the most telling test (the
rejected one furthest beyond its floor, else the most sensitive one: smallest floor plus
interval half-width), with its estimated relative bias, interval and floor. Plain text here;
the Markdown and HTML reports escape it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .results import PortResult

HEAD: tuple[str, ...] = (
    "port",
    "tests",
    "systematic deviations",
    "most telling test",
    "delta (relative bias)",
    "interval",
    "floor",
)


def _telling(tests: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    finite = [t for t in tests if all(isinstance(t[k], float) for k in ("low", "high", "floor"))]
    if not finite:
        return None
    bad = [t for t in finite if t["rejected"]]
    if bad:
        return max(bad, key=lambda t: max(t["low"] - t["floor"], -t["floor"] - t["high"]))
    return min(finite, key=lambda t: t["floor"] + (t["high"] - t["low"]) / 2)


def row(r: PortResult) -> tuple[str, ...] | None:
    """The report row of ``r`` (``HEAD``), or None when no statistical test was recorded."""
    s = r.systematic
    if s is None:
        return None
    t = _telling(s["tests"])
    if t is None:
        why = "; ".join(s["not_tested"][:2]) or "no re-synced step compared"
        return (r.label, str(s["tests_run"]), "-", f"not tested: {why}", "-", "-", "-")
    return (
        r.label,
        str(s["tests_run"]),
        str(s["rejected"]),
        f"{t['scenario']} {t['quantity']} ({t['coordinates']} coordinates, {t['clusters']} steps)",
        f"{t['delta']:.3g}",
        f"{t['low']:.3g} .. {t['high']:.3g}",
        f"+-{t['floor']:.2g}",
    )


def summary_line(r: PortResult) -> str | None:
    """One line for the terminal: the statistical verdict of ``r``."""
    cells = row(r)
    if cells is None:
        return None
    _, n, bad, where, delta, interval, floor = cells
    if bad == "-":
        return f"statistical verdict: {where}"
    what = "systematic deviation" if bad != "0" else "no systematic deviation"
    alpha = r.systematic["alpha"] if r.systematic else 0.0
    return (
        f"statistical verdict: {what} ({bad} of {n} tests, false-alarm probability <= "
        f"{alpha:.0e}); {where}: delta = {delta} in {interval}, floor {floor}"
    )


def rows(results: Sequence[PortResult]) -> list[tuple[str, ...]]:
    """The rows of every port with a recorded statistical verdict."""
    return [c for r in results if (c := row(r)) is not None]
