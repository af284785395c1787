"""Command line: ``setadam-conformance run | check | scenarios | vectors`` (also python -m conformance).

Exit codes: 0 conformant, 1 not conformant, 2 usage, import or environment error. The last line
printed is a one-line verdict.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import report as rep
from .interface import DTYPES
from .results import PortResult, PortSpec
from .runner import check_port, error_result
from .vectors import cli as vectors_cli

EXIT_OK, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2 too; keep the verdict-line rule
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        print(f"VERDICT: error: usage: {message}")
        raise SystemExit(EXIT_ERROR)


class Progress:
    """A plain-text progress bar on stderr (carriage returns on a terminal, lines otherwise)."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total = max(total, 1)
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.done = 0
        self.t0 = time.perf_counter()
        self.label = ""

    def _bar(self, extra: str) -> str:
        width = 24
        filled = int(width * self.done / self.total)
        el = time.perf_counter() - self.t0
        return (
            f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {el:5.0f}s {extra}"
        )

    def start(self, label: str) -> None:
        self.label = label
        if self.enabled and self.tty:
            sys.stderr.write("\r\033[K" + self._bar(label)[:120])
            sys.stderr.flush()

    def scenario(self, name: str) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\r\033[K" + self._bar(f"{self.label} · {name}")[:120])
            sys.stderr.flush()

    def finish(self, r: PortResult) -> None:
        self.done += 1
        if not self.enabled:
            return
        line = self._bar(f"{r.label}: {r.verdict}")
        if self.tty:
            sys.stderr.write("\r\033[K" + line[:120] + ("\n" if r.verdict == "fail" else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def _worker_check(
    key: tuple[str, Sequence[str] | None, Sequence[str] | None, bool],
    name: str,
    dtype: str,
    scenarios: Sequence[str] | None,
    timeout_s: float | None,
) -> PortResult:
    """Check one port in a worker process (the spec is rebuilt from the registry by name)."""
    from .adapters.registry import available_ports

    device, dtypes, patterns, quick = key
    try:
        specs, _ = available_ports(device, dtypes, patterns, quick)
        spec = next(s for s in specs if s.name == name and s.dtype == dtype)
        return check_port(
            spec, scenarios=list(scenarios) if scenarios else None, quick=quick, timeout_s=timeout_s
        )
    except Exception as exc:
        return error_result(
            name, "adam", dtype, "cpu", f"worker error: {type(exc).__name__}: {exc}"
        )


def _report_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("reports") / stamp


def _check_specs(
    specs: Sequence[PortSpec],
    *,
    scenarios: Sequence[str] | None,
    quick: bool,
    outdir: Path,
    options: dict[str, Any],
    notes: list[str],
    progress: bool,
    timeout_s: float | None,
    jobs: int = 1,
    registry_key: tuple[str, Sequence[str] | None, Sequence[str] | None, bool] | None = None,
) -> int:
    outdir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = outdir / "report.json", outdir / "report.md"
    results: list[PortResult] = []
    bar = Progress(len(specs), progress)
    t0 = time.perf_counter()

    def write(complete: bool) -> None:
        report = rep.build(
            results, options=options, notes=notes, complete=complete,
            duration_s=time.perf_counter() - t0, series=complete,
        )  # fmt: skip
        rep.write_json(json_path, report)
        md_path.write_text(rep.markdown(report, results))

    def done(r: PortResult) -> None:
        results.append(r)
        bar.finish(r)
        try:
            write(False)
        except Exception as exc:  # pragma: no cover - disk full etc.
            notes.append(f"could not write the report incrementally: {exc}")

    if jobs > 1 and registry_key is not None and len(specs) > 1:
        _parallel(specs, registry_key, scenarios, timeout_s, jobs, bar, done)
        order = {(s.name, s.dtype): i for i, s in enumerate(specs)}
        results.sort(key=lambda r: order.get((r.name, r.dtype), len(order)))
    else:
        for spec in specs:
            bar.start(f"{spec.name} {spec.dtype}")
            try:
                r = check_port(
                    spec,
                    scenarios=list(scenarios) if scenarios else None,
                    quick=quick,
                    timeout_s=timeout_s,
                    progress=bar.scenario,
                )
            except Exception as exc:  # the harness itself must not die on one port
                r = error_result(spec.name, spec.algorithm, spec.dtype, spec.device,
                                 f"harness error while checking: {type(exc).__name__}: {exc}")  # fmt: skip
            done(r)
    bar.close()
    notes.extend(rep.plots(results, outdir / "plots"))
    write(True)
    print(rep.table(results))
    for r in results:
        if r.verdict in ("fail", "error"):
            print(f"\n{r.label}: {r.verdict}: {r.message}")
            for c, s, d in r.likely_causes[:3]:
                print(f"  likely cause: {c} (distance {s:.3g}): {d}")
    for n in notes:
        print(f"note: {n}")
    print(f"reports: {json_path}, {md_path}")
    _, code = rep.overall(results) if results else ("error", EXIT_ERROR)
    print(rep.verdict_line(results, outdir))
    return code


def _parallel(
    specs: Sequence[PortSpec],
    key: tuple[str, Sequence[str] | None, Sequence[str] | None, bool],
    scenarios: Sequence[str] | None,
    timeout_s: float | None,
    jobs: int,
    bar: Progress,
    done: Any,
) -> None:
    """Check ports in ``jobs`` worker processes. Lanes are formed by dtype (each process keeps
    its own reference cache, and references depend on the dtype only through the rounding of
    the inputs): float64 with float16, float32 with bfloat16 for two processes (the full
    scenario sets run in float64 and float32, the half dtypes use the quick subset). Results
    arrive as they finish; the reports are rewritten each time."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

    pairs = {"float64": 0, "float16": 0, "float32": 1, "bfloat16": 1}
    order = ("float64", "float32", "bfloat16", "float16")
    if jobs >= 4:
        lane_of = {d: i for i, d in enumerate(order)}
    else:
        lane_of = {d: pairs[d] % jobs for d in order}
    n = max(lane_of.values()) + 1
    lanes: list[list[PortSpec]] = [[] for _ in range(n)]
    for s in specs:
        lanes[lane_of.get(s.dtype, 0)].append(s)
    lanes = [lane for lane in lanes if lane]
    ctx = mp.get_context("spawn")
    pools = [ProcessPoolExecutor(max_workers=1, mp_context=ctx) for _ in lanes]
    pending: dict[Future[PortResult], PortSpec] = {}
    try:
        for pool, lane in zip(pools, lanes, strict=True):
            for s in lane:
                fut = pool.submit(_worker_check, key, s.name, s.dtype, scenarios, timeout_s)
                pending[fut] = s
        bar.start(f"{len(pending)} port checks in {len(lanes)} processes")
        while pending:
            finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in finished:
                s = pending.pop(fut)
                try:
                    r = fut.result()
                except Exception as exc:  # a worker process died (segfault, OOM)
                    r = error_result(s.name, s.algorithm, s.dtype, s.device,
                                     f"worker process failed: {type(exc).__name__}: {exc}")  # fmt: skip
                done(r)
    finally:
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)


def cmd_run(args: argparse.Namespace) -> int:
    from .adapters.registry import available_ports
    from .scenarios import select

    dtypes = args.dtype or None
    for d in dtypes or []:
        if d not in DTYPES:
            raise _UsageError(f"unknown dtype {d!r}; choose from {', '.join(DTYPES)}")
    try:
        if args.scenario:
            select(args.scenario)
    except KeyError as exc:
        raise _UsageError(str(exc.args[0])) from None
    specs, notes = available_ports(args.device, dtypes, args.port, args.quick)
    if args.list:
        for s in specs:
            print(f"{s.name:40s} {s.algorithm:8s} {s.dtype:9s} {s.device}")
        for n in notes:
            print(f"note: {n}")
        print(f"VERDICT: listed {len(specs)} port checks (nothing run)")
        return EXIT_OK
    if not specs:
        for n in notes:
            print(f"note: {n}")
        print("VERDICT: error: no port matches on this machine")
        return EXIT_ERROR
    options = {
        "command": "run",
        "quick": args.quick,
        "device": args.device,
        "dtypes": list(dtypes) if dtypes else None,
        "ports": args.port,
        "scenarios": args.scenario,
    }
    return _check_specs(
        specs,
        scenarios=args.scenario,
        quick=args.quick,
        outdir=_report_dir(args.report),
        options=options,
        notes=notes,
        progress=not args.no_progress,
        timeout_s=args.timeout,
        jobs=args.jobs if args.jobs is not None else min(2, os.cpu_count() or 1),
        registry_key=(args.device, dtypes, args.port, args.quick),
    )


def cmd_check(args: argparse.Namespace) -> int:
    from .adapters import third_party
    from .scenarios import select

    try:
        hyper = third_party.parse_hyper(args.hyper)
        if args.scenario:
            select(args.scenario)
    except (ValueError, KeyError) as exc:
        raise _UsageError(str(exc.args[0] if exc.args else exc)) from None
    if args.dtype and args.dtype not in DTYPES:
        raise _UsageError(f"unknown dtype {args.dtype!r}; choose from {', '.join(DTYPES)}")
    device = args.device or "cpu"
    if device not in ("cpu", "cuda"):
        raise _UsageError(f"--device must be cpu or cuda, got {device!r}")
    if device == "cuda" and args.framework == "torch":
        from .adapters.registry import cuda_available

        if not cuda_available():
            print("VERDICT: error: --device cuda but torch.cuda.is_available() is False here")
            return EXIT_ERROR
    try:
        spec = third_party.spec(
            args.target, args.framework, args.algorithm, hyper=hyper,
            weight_decay_mode=args.weight_decay_mode, dtype=args.dtype, device=device,
            timeout_s=args.timeout or 60.0,
        )  # fmt: skip
    except (ImportError, AttributeError, ValueError) as exc:
        print(f"cannot load {args.target}: {type(exc).__name__}: {exc}", file=sys.stderr)
        print(f"VERDICT: error: cannot load {args.target} ({type(exc).__name__}: {exc})")
        return EXIT_ERROR
    except Exception as exc:  # importing user code can raise anything
        print(f"VERDICT: error: importing {args.target} raised {type(exc).__name__}: {exc}")
        return EXIT_ERROR
    options = {
        "command": "check",
        "target": args.target,
        "framework": args.framework,
        "algorithm": args.algorithm,
        "hyper": {k: repr(v) for k, v in hyper.items()},
        "weight_decay_mode": args.weight_decay_mode,
        "dtype": spec.dtype,
        "device": device,
        "quick": args.quick,
        "scenarios": args.scenario,
    }
    return _check_specs(
        [spec],
        scenarios=args.scenario,
        quick=args.quick,
        outdir=_report_dir(args.report),
        options=options,
        notes=[],
        progress=not args.no_progress,
        timeout_s=args.timeout,
    )


def cmd_scenarios(args: argparse.Namespace) -> int:
    from .scenarios import SCENARIOS, SHARDING, table

    print(table())
    print(f"VERDICT: listed {len(SCENARIOS) + len(SHARDING)} scenarios (nothing run)")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="setadam-conformance", description=__doc__)
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    r = sub.add_parser("run", help="check every port available on this machine")
    r.add_argument("--quick", action="store_true", help="a fast subset of ports and scenarios")
    r.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    r.add_argument("--dtype", action="append", help="dtype to check (repeatable)")
    r.add_argument("--port", action="append", help="port name glob (repeatable)")
    r.add_argument("--scenario", action="append", help="scenario name glob (repeatable)")
    r.add_argument("--list", action="store_true", help="list the port checks and exit")
    r.add_argument("--report", help="report directory (default ./reports/<timestamp>)")
    r.add_argument("--no-progress", action="store_true")
    r.add_argument("--timeout", type=float, default=None, help="per-step timeout in seconds")
    r.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="worker processes (default: min(2, CPUs); 1: in-process)",
    )
    r.set_defaults(func=cmd_run)
    c = sub.add_parser("check", help="check a third-party implementation MODULE:ATTR")
    c.add_argument("target", help="MODULE:ATTR")
    c.add_argument("--framework", required=True, choices=("torch", "jax"))
    c.add_argument("--algorithm", required=True, choices=("adam", "setadam"))
    c.add_argument("--hyper", action="append", help="NAME=VALUE for the target (repeatable)")
    c.add_argument("--weight-decay-mode", choices=("l2", "decoupled"), default=None)
    c.add_argument("--dtype", default=None)
    c.add_argument("--device", default=None)
    c.add_argument("--scenario", action="append")
    c.add_argument("--quick", action="store_true")
    c.add_argument("--report")
    c.add_argument("--no-progress", action="store_true")
    c.add_argument("--timeout", type=float, default=None, help="per-step timeout in seconds")
    c.set_defaults(func=cmd_check)
    s = sub.add_parser("scenarios", help="list the scenarios")
    s.set_defaults(func=cmd_scenarios)
    vectors_cli.add_subparser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        print("VERDICT: error: usage: no command given (run, check, scenarios, vectors)")
        return EXIT_ERROR
    try:
        code = int(args.func(args))
    except _UsageError as exc:
        print(f"setadam-conformance: error: {exc}", file=sys.stderr)
        print(f"VERDICT: error: usage: {exc}")
        code = EXIT_ERROR
    except KeyboardInterrupt:
        print("VERDICT: error: interrupted (reports written so far are kept)")
        code = EXIT_ERROR
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def console_main() -> None:  # pragma: no cover - the console script
    code = main()
    # a hung port leaves a daemon thread behind; do not let interpreter shutdown wait on it
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    console_main()
