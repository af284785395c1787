"""Check a list of ports, ``jobs`` at a time, each in a worker process, and report as they finish.

The parent drives every port from a thread of its own (the reference runs and comparisons happen
here, shared through the thread-safe reference cache; only the ports run in workers), so the
parent alone decides each verdict and writes the reports: ``report.json``, ``report.md`` and
``report.html`` are rewritten after every port (``"complete": false`` until the end), then the
table, every failure, the notes and, last, the one-line verdict are printed.

A spec with a locator runs in a worker process (:mod:`conformance.process_session`); with
``reuse`` a worker is kept for the next registry port of the same thread (our own ports; a
third-party target always gets a fresh worker), and one that hung or died is replaced, so only
the port that killed it is marked. A spec with only a factory runs in-process.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import report as rep
from . import report_html
from . import report_text as text
from .progress import RichProgress, print_table, use_rich
from .results import PortResult, PortSpec
from .runner import check_port, error_result
from .session import PortSetupError, describe_exception

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .process_session import Worker

#: the order dtypes are checked in: ports sharing a dtype run together and share references
_DTYPE_ORDER = ("float64", "float32", "bfloat16", "float16")


def _schedule_key(spec: PortSpec, index: int) -> tuple[int, int, int]:
    """The order ports are started in: the longest first (JAX ports compile every scenario and
    run in the worker while the parent stays free), then by dtype (shared references)."""
    jit = spec.locator is not None and spec.locator.framework == "jax"
    dtype = _DTYPE_ORDER.index(spec.dtype) if spec.dtype in _DTYPE_ORDER else len(_DTYPE_ORDER)
    return (0 if jit else 1, dtype, index)


class Progress:
    """Plain-text progress on stderr, one line per finished port (logs, CI, ``--no-progress``
    silences it); on a terminal :class:`conformance.progress.RichProgress` draws a bar instead."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total = max(total, 1)
        self.enabled = enabled
        self.done = 0
        self.t0 = time.perf_counter()
        self._lock = threading.Lock()

    def scenario(self, label: str, name: str) -> None:
        """A scenario starts (plain text shows finished ports only)."""

    def finish(self, r: PortResult) -> None:
        with self._lock:
            self.done += 1
            if not self.enabled:
                return
            el = time.perf_counter() - self.t0
            sys.stderr.write(f"{self.done}/{self.total} {el:5.0f}s "
                             f"{text.term_text(r.label)}: {r.verdict}\n")  # fmt: skip
            sys.stderr.flush()

    def close(self) -> None:
        """Nothing to clear."""


@dataclass(frozen=True)
class Limits:
    """What bounds a port's check: per-call timeout, whole-check deadline, worker memory."""

    timeout_s: float | None = None
    deadline_s: float | None = None
    max_memory: int | None = None


class _Lane:
    """One thread's worker, kept across registry ports when ``reuse`` is on."""

    def __init__(self, reuse: bool, limits: Limits) -> None:
        self.reuse = reuse
        self.limits = limits
        self.worker: Worker | None = None

    def check(
        self,
        spec: PortSpec,
        scenarios: Sequence[str] | None,
        quick: bool,
        progress: Progress | RichProgress,
    ) -> PortResult:
        lim = self.limits
        label = f"{spec.name} {spec.dtype}"
        kw: dict[str, Any] = dict(
            scenarios=list(scenarios) if scenarios else None, quick=quick, timeout_s=lim.timeout_s,
            progress=lambda name: progress.scenario(label, name),
        )  # fmt: skip
        if spec.locator is None:
            return check_port(spec, **kw)
        from .process_session import ProcessSession, Worker

        timeout = lim.timeout_s if lim.timeout_s is not None else spec.timeout_s
        worker = None
        if self.reuse and spec.locator.kind == "registry":
            if self.worker is None or not self.worker.alive:
                try:
                    self.worker = Worker(lim.max_memory)
                except PortSetupError as exc:
                    return error_result(spec.name, spec.algorithm, spec.dtype, spec.device,
                                        str(exc))  # fmt: skip
            worker = self.worker
        session = ProcessSession(
            spec.locator, timeout, deadline_s=lim.deadline_s, max_memory=lim.max_memory,
            worker=worker,
        )  # fmt: skip
        return check_port(spec, session=session, **kw)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.kill()


def run_checks(
    specs: Sequence[PortSpec],
    *,
    scenarios: Sequence[str] | None,
    quick: bool,
    limits: Limits,
    jobs: int,
    reuse: bool,
    progress: Progress | RichProgress,
    done: Callable[[PortResult], None],
) -> list[PortResult]:
    """Check ``specs`` with ``jobs`` threads; ``done(result)`` as each finishes. Returns the
    results in the order of ``specs``."""
    order = sorted(range(len(specs)), key=lambda i: _schedule_key(specs[i], i))
    results: dict[int, PortResult] = {}
    lock = threading.Lock()
    queue = list(order)

    def lane_main(lane: _Lane) -> None:
        try:
            while True:
                with lock:
                    if not queue:
                        return
                    i = queue.pop(0)
                s = specs[i]
                try:
                    r = lane.check(s, scenarios, quick, progress)
                except Exception as exc:  # the harness itself must not die on one port
                    r = error_result(s.name, s.algorithm, s.dtype, s.device,
                                     f"harness error while checking: {describe_exception(exc)}")  # fmt: skip
                with lock:
                    results[i] = r
                    done(r)
        finally:
            lane.close()

    lanes = [_Lane(reuse, limits) for _ in range(max(1, min(jobs, len(specs))))]
    if len(lanes) == 1:
        lane_main(lanes[0])
    else:
        threads = [threading.Thread(target=lane_main, args=(ln,), daemon=True) for ln in lanes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return [results[i] for i in range(len(specs)) if i in results]


@dataclass
class Checked:
    """What :func:`check_and_report` found: the results, the notes, the report files written."""

    results: list[PortResult]
    notes: list[str]
    json_path: Path
    md_path: Path
    html_path: Path


def check_and_report(
    specs: Sequence[PortSpec],
    *,
    scenarios: Sequence[str] | None,
    quick: bool,
    outdir: Path,
    options: dict[str, Any],
    notes: list[str],
    progress: bool,
    limits: Limits | None = None,
    jobs: int = 1,
    reuse: bool = False,
) -> Checked:
    """Check ``specs`` and write the reports under ``outdir`` (printing nothing on stdout)."""
    outdir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = outdir / "report.json", outdir / "report.md"
    html_path = outdir / "report.html"
    finished: list[PortResult] = []
    bar: Progress | RichProgress
    if progress and use_rich(sys.stderr):
        bar = RichProgress(len(specs))
    else:
        bar = Progress(len(specs), progress)
    t0 = time.perf_counter()

    def write(results: Sequence[PortResult], complete: bool) -> None:
        report = rep.build(
            results, options=options, notes=notes, complete=complete,
            duration_s=time.perf_counter() - t0, series=complete,
        )  # fmt: skip
        rep.write_json(json_path, report)
        md_path.write_text(text.markdown(report, results))
        report_html.write(html_path, report, results, outdir / "plots" if complete else None)

    def done(r: PortResult) -> None:
        finished.append(r)
        bar.finish(r)
        try:
            write(finished, False)
        except Exception as exc:  # pragma: no cover - disk full etc.
            notes.append(f"could not write the report incrementally: {exc}")

    results = run_checks(
        specs, scenarios=scenarios, quick=quick, limits=limits or Limits(), jobs=jobs,
        reuse=reuse, progress=bar, done=done,
    )  # fmt: skip
    bar.close()
    notes.extend(rep.plots(results, outdir / "plots"))
    write(results, True)
    return Checked(list(results), notes, json_path, md_path, html_path)


def check_specs(specs: Sequence[PortSpec], **kw: Any) -> int:
    """:func:`check_and_report` (the same keyword arguments), then the summary printed; the exit
    code."""
    c = check_and_report(specs, **kw)
    results = c.results
    print_table(results)
    for r in results:
        if r.verdict in ("fail", "error", "not_judged"):
            print()
            print("\n".join(text.failure_listing(r)))
    for r in results:
        if r.output is not None:
            print(f"note: {text.term_text(r.label)} wrote {r.output.bytes} bytes to stdout/stderr "
                  "(not shown; the last lines are in report.md)")  # fmt: skip
    for n in c.notes:
        print(f"note: {n}")
    print(f"reports: {c.json_path}, {c.md_path}, {c.html_path}")
    _, code = rep.overall(results) if results else ("error", 2)
    print(text.verdict_line(results, c.json_path.parent))
    return code
