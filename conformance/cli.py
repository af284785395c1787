"""Command line: ``setadam-conformance run | check | fuzz | scenarios | vectors`` (also python -m conformance).

Exit codes: 0 conformant; 1 not conformant (a port was judged and failed, or crashed or hung
while judged); 2 usage, import or environment error (a bad option value, a target that cannot be
imported or rejects the calling convention, a missing device, nothing judged). The last line
printed is a one-line verdict. ``run`` and ``check`` always check ports in worker processes
(:mod:`conformance.batch`); this process imports no third-party target.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .batch import Limits, check_specs
from .interface import DTYPES
from .vectors import cli as vectors_cli

EXIT_OK, EXIT_FAIL, EXIT_ERROR = 0, 1, 2
#: below this a per-step timeout fails correct ports (a step is never that fast end to end)
MIN_TIMEOUT_S = 0.1
_SIZE = re.compile(r"(?i)^\s*([0-9]+(?:\.[0-9]*)?)\s*([kmgt]?)i?b?\s*$")


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2 too; keep the verdict-line rule
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        print(f"VERDICT: error: usage: {message}")
        raise SystemExit(EXIT_ERROR)


def _seconds(text: str) -> float:
    """An option's value in seconds: finite and at least MIN_TIMEOUT_S."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"want seconds, got {text!r}") from None
    if not math.isfinite(x) or x < MIN_TIMEOUT_S:
        raise argparse.ArgumentTypeError(
            f"want a finite number of seconds >= {MIN_TIMEOUT_S:g}, got {text!r}"
        )
    return x


def _jobs(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"want a whole number of jobs, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"want at least 1 job, got {text!r}")
    return n


def _bytes(text: str) -> int:
    """``4G``, ``512M``, ``1.5GiB`` or a number of bytes."""
    m = _SIZE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"want a size such as 4G or 512M, got {text!r}")
    scale = 1024 ** " kmgt".index((m.group(2) or " ").lower())
    n = int(float(m.group(1)) * scale)
    if n <= 0:
        raise argparse.ArgumentTypeError(f"want a size > 0, got {text!r}")
    return n


def _writable_dir(path: Path) -> Path:
    """``path`` created if needed and proven writable; a _UsageError naming --report if not."""
    if path.exists() and not path.is_dir():
        raise _UsageError(f"--report {path} is not a directory (a file of that name exists)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise _UsageError(
            f"--report {path} is not a writable directory: {exc.strerror or exc}"
        ) from None
    return path


def _report_dir(arg: str | None) -> Path:
    """The report directory: ``--report`` as given, else a fresh ``reports/<timestamp>[-k]``
    (created atomically, so two checks started in the same second never share one)."""
    if arg:
        return _writable_dir(Path(arg))
    base = _writable_dir(Path("reports"))
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for k in range(1, 10_000):
        path = base / (stamp if k == 1 else f"{stamp}-{k}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise _UsageError(f"cannot create {path}: {exc.strerror or exc}") from None
        return path
    raise _UsageError(f"cannot find a free report directory under {base}")


def _limits(args: argparse.Namespace) -> Limits:
    return Limits(args.timeout, args.deadline, args.max_memory)


def cmd_run(args: argparse.Namespace) -> int:
    from .adapters.registry import available_ports, cuda_available
    from .scenarios import select

    dtypes = args.dtype or None
    try:
        if args.scenario:
            select(args.scenario)
    except KeyError as exc:
        raise _UsageError(str(exc.args[0])) from None
    if args.device == "cuda" and not cuda_available():
        print("VERDICT: error: --device cuda, but torch.cuda.is_available() is False here")
        return EXIT_ERROR
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
    outdir = _report_dir(args.report)
    jobs = args.jobs if args.jobs is not None else min(2, os.cpu_count() or 1)
    options = {
        "command": "run",
        "quick": args.quick,
        "device": args.device,
        "dtypes": list(dtypes) if dtypes else None,
        "ports": args.port,
        "scenarios": args.scenario,
        "timeout_s": args.timeout,
        "deadline_s": args.deadline,
        "max_memory": args.max_memory,
        "jobs": jobs,
        "fresh_workers": args.fresh_workers,
    }
    return check_specs(
        specs, scenarios=args.scenario, quick=args.quick, outdir=outdir, options=options,
        notes=notes, progress=not args.no_progress, limits=_limits(args), jobs=jobs,
        reuse=not args.fresh_workers,
    )  # fmt: skip


def cmd_check(args: argparse.Namespace) -> int:
    from .adapters import third_party
    from .adapters.state_discovery import parse_state_map
    from .scenarios import select

    try:
        hyper = third_party.parse_hyper(args.hyper)
        state_map = parse_state_map(args.state_map)
        if args.scenario:
            select(args.scenario)
        spec = third_party.remote_spec(
            args.target, args.framework, args.algorithm, hyper=hyper,
            weight_decay_mode=args.weight_decay_mode, dtype=args.dtype, device=args.device,
            timeout_s=args.timeout or 60.0, state_map=state_map,
        )  # fmt: skip
    except (ValueError, TypeError, KeyError) as exc:
        raise _UsageError(str(exc.args[0] if exc.args else exc)) from None
    outdir = _report_dir(args.report)
    options = {
        "command": "check",
        "target": args.target,
        "framework": args.framework,
        "algorithm": args.algorithm,
        "hyper": {k: repr(v) for k, v in hyper.items()},
        "weight_decay_mode": args.weight_decay_mode,
        "state_map": args.state_map,
        "dtype": spec.dtype,
        "device": args.device,
        "quick": args.quick,
        "scenarios": args.scenario,
        "timeout_s": args.timeout,
        "deadline_s": args.deadline,
        "max_memory": args.max_memory,
    }
    return check_specs(
        [spec], scenarios=args.scenario, quick=args.quick, outdir=outdir, options=options,
        notes=[], progress=not args.no_progress, limits=_limits(args),
    )  # fmt: skip


def cmd_fuzz(args: argparse.Namespace) -> int:
    from .fuzz import command as fuzz_command

    try:
        return fuzz_command.run(args, _report_dir)
    except fuzz_command.UsageError as exc:
        raise _UsageError(str(exc)) from None


def cmd_scenarios(args: argparse.Namespace) -> int:
    from .scenarios import SCENARIOS, table

    print(table())
    print(f"VERDICT: listed {len(SCENARIOS)} scenarios (nothing run)")
    return EXIT_OK


def _limit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--report", help="report directory (default: a fresh ./reports/<timestamp>)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--timeout", type=_seconds, default=None,
                   help="per-call timeout in seconds (default 60): a port call that takes longer "
                   "is a hang and its worker is killed")  # fmt: skip
    p.add_argument("--deadline", type=_seconds, default=None,
                   help="wall-clock limit of one port's whole check in seconds (default none)")
    p.add_argument("--max-memory", type=_bytes, default=None, metavar="SIZE",
                   help="address-space limit of each worker process (RLIMIT_AS), e.g. 4G; "
                   "frameworks count towards it")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="setadam-conformance", description=__doc__)
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    r = sub.add_parser("run", help="check every port available on this machine")
    r.add_argument("--quick", action="store_true", help="a fast subset of ports and scenarios")
    r.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    r.add_argument("--dtype", action="append", choices=DTYPES, help="dtype to check (repeatable)")
    r.add_argument("--port", action="append", help="port name glob (repeatable)")
    r.add_argument("--scenario", action="append", help="scenario name glob (repeatable)")
    r.add_argument("--list", action="store_true", help="list the port checks and exit")
    _limit_options(r)
    r.add_argument("--jobs", type=_jobs, default=None,
                   help="ports checked at once, each in a worker process (default: min(2, CPUs))")
    r.add_argument("--fresh-workers", action="store_true",
                   help="a new worker process for every port (default: a worker is reused for "
                   "the next port until one kills it)")  # fmt: skip
    r.set_defaults(func=cmd_run)
    c = sub.add_parser("check", help="check a third-party implementation MODULE:ATTR")
    c.add_argument("target", help="MODULE:ATTR (imported in the worker process only)")
    c.add_argument("--framework", required=True, choices=("torch", "jax"))
    c.add_argument("--algorithm", required=True, choices=("adam", "setadam"))
    c.add_argument("--hyper", action="append", help="NAME=VALUE for the target (repeatable)")
    c.add_argument("--weight-decay-mode", choices=("l2", "decoupled"), default=None)
    c.add_argument(
        "--state-map",
        default=None,
        help="m=KEY,v=KEY,vmax=KEY,step=KEY: the entries of the target's state (KEY: the end of "
        "an entry's path, e.g. exp_avg_var); 'none': do not read the state (default: found "
        "from their values)",
    )
    c.add_argument("--dtype", default=None, choices=DTYPES)
    c.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    c.add_argument("--scenario", action="append")
    c.add_argument("--quick", action="store_true")
    _limit_options(c)
    c.set_defaults(func=cmd_check)
    s = sub.add_parser("scenarios", help="list the scenarios")
    s.set_defaults(func=cmd_scenarios)
    vectors_cli.add_subparser(sub)
    from .fuzz import command as fuzz_command

    fuzz_command.add_subparser(sub, _limit_options, cmd_fuzz)
    return p


def _cwd_importable() -> None:
    """As ``python -m conformance`` does: the working directory first on ``sys.path`` (the
    worker processes inherit it), so ``check mymodule:MyOpt`` finds ``./mymodule.py``."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (the console script calls it with ``argv=None``)."""
    if argv is None:
        _cwd_importable()
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


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
