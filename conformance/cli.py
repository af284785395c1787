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
from .results import PortSpec
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


def _ranks(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"want a whole number of ranks, got {text!r}") from None
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError(f"want 1 to 64 ranks, got {text!r}")
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
    if not args.scenario:  # never silently: say which scenarios only run when named
        from .scenarios import opt_in_note

        notes = [*notes, opt_in_note()]
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
    # one lane more than the cores (up to 3): a lane waits on its worker and the worker on the
    # harness's reference run, so CPUs + 1 lanes keep the cores busy (measured: 2 cores, 2 -> 3
    # lanes, the default run 211 -> 188 s)
    jobs = args.jobs if args.jobs is not None else min(3, (os.cpu_count() or 1) + 1)
    # the sharded ports: a mesh's host devices before any worker imports jax; rank pools started
    from .adapters import ours_sharded
    from .api import host_devices

    host_devices(ours_sharded.mesh_devices(specs))
    ours_sharded.prepare(specs)
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


def _sided_hyper_options(tg: Any) -> None:
    """``--target-hyper`` and ``--reference-hyper`` (``check`` and ``fuzz``)."""
    tg.add_argument("--target-hyper", action="append", metavar="NAME=VALUE",
                    help="a constructor argument for the target only, passed as given; "
                    "repeatable (default: none; e.g. --target-hyper foreach=True)")  # fmt: skip
    tg.add_argument("--reference-hyper", action="append", metavar="NAME=VALUE",
                    help="a field of the reference config only, never passed to the target; "
                    "repeatable (default: none; e.g. --reference-hyper eps_mode=tf for a "
                    "TensorFlow / keras Adam)")  # fmt: skip


def _sided_hypers(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """``--hyper`` (both sides), ``--target-hyper``, ``--reference-hyper``, parsed."""
    from .adapters import third_party

    return {
        side: third_party.parse_hyper(getattr(args, side), "--" + side.replace("_", "-"))
        for side in ("hyper", "target_hyper", "reference_hyper")
    }


def check_specs_of(args: argparse.Namespace) -> tuple[list[PortSpec], dict[str, Any]]:
    """The port checks of ``check``'s arguments, one per ``--dtype`` (each once, in order), and
    the parsed hyperparameters (:func:`conformance.api.target_specs`, as the Python API and the
    pytest plugin build theirs); raises _UsageError for a bad value."""
    from .api import target_specs
    from .scenarios import select

    try:
        sided = _sided_hypers(args)
        if args.scenario:
            select(args.scenario)
        specs = target_specs(
            args.target, framework=args.framework, algorithm=args.algorithm, dtypes=args.dtype,
            **sided, weight_decay_mode=args.weight_decay_mode, state_map=args.state_map,
            device=args.device, timeout_s=args.timeout, nprocs=args.nprocs, devices=args.devices,
        )  # fmt: skip
    except (ValueError, TypeError, KeyError) as exc:
        raise _UsageError(str(exc.args[0] if exc.args else exc)) from None
    return specs, sided["hyper"]


def cmd_check(args: argparse.Namespace) -> int:
    from .adapters.third_party import hyper_notes

    specs, hyper = check_specs_of(args)
    sided = _sided_hypers(args)
    outdir = _report_dir(args.report)
    options = {
        "command": "check",
        "target": args.target,
        "framework": args.framework,
        "algorithm": args.algorithm,
        **{side: {k: repr(v) for k, v in h.items()} for side, h in sided.items()},
        "weight_decay_mode": args.weight_decay_mode,
        "state_map": args.state_map,
        "dtype": specs[0].dtype if len(specs) == 1 else None,
        "dtypes": [s.dtype for s in specs],
        "device": args.device,
        "quick": args.quick,
        "scenarios": args.scenario,
        "timeout_s": args.timeout,
        "deadline_s": args.deadline,
        "max_memory": args.max_memory,
        "nprocs": args.nprocs,
        "devices": args.devices,
    }
    from .api import host_devices

    host_devices(args.devices)
    return check_specs(
        specs, scenarios=args.scenario, quick=args.quick, outdir=outdir, options=options,
        notes=hyper_notes(args.algorithm, hyper) + _check_notes(args),
        progress=not args.no_progress, limits=_limits(args),
    )  # fmt: skip


def _check_notes(args: argparse.Namespace) -> list[str]:
    """What ``check`` leaves out of its default scenarios, said (never silently)."""
    if args.scenario:
        return []
    from .adapters.registry import JAX_SLOW_NOTE
    from .scenarios import opt_in_note

    return [opt_in_note()] + ([JAX_SLOW_NOTE] if args.framework == "jax" else [])


def cmd_fuzz(args: argparse.Namespace) -> int:
    from .fuzz import command as fuzz_command

    try:
        return fuzz_command.run(args, _report_dir)
    except fuzz_command.UsageError as exc:
        raise _UsageError(str(exc)) from None


def cmd_scenarios(args: argparse.Namespace) -> int:
    from .scenarios import CONTRACT, SCENARIOS, SHARDING, table

    print(table())
    n = len(SCENARIOS) + len(CONTRACT) + len(SHARDING)
    print(f"VERDICT: listed {n} scenarios (nothing run)")
    return EXIT_OK


class _HelpFormatter(argparse.HelpFormatter):
    """Help that fits an 80-column terminal, options one per paragraph (as ``pytest --help``)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30, width=min(100, _terminal_width()))


def _terminal_width() -> int:
    import shutil

    return shutil.get_terminal_size((80, 24)).columns


def _output_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("reports and output")
    g.add_argument("--report", metavar="DIR",
                   help="directory for report.json, report.md, report.html and plots/ "
                   "(default: a fresh ./reports/<timestamp>; e.g. --report out/adam)")  # fmt: skip
    g.add_argument("--no-progress", action="store_true",
                   help="no progress bar on stderr (default: a bar when stderr is a terminal; "
                   "e.g. in CI logs)")  # fmt: skip


def _limit_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("limits (a port that exceeds one is killed and reported)")
    g.add_argument("--timeout", type=_seconds, default=None, metavar="SECONDS",
                   help="per-call timeout: a port call that takes longer is a hang and its "
                   "worker is killed (default 60; e.g. --timeout 300 for a slow GPU)")  # fmt: skip
    g.add_argument("--deadline", type=_seconds, default=None, metavar="SECONDS",
                   help="wall-clock limit of one port's whole check (default: none; "
                   "e.g. --deadline 600)")  # fmt: skip
    g.add_argument("--max-memory", type=_bytes, default=None, metavar="SIZE",
                   help="address-space limit of each worker process (RLIMIT_AS); frameworks "
                   "count towards it (default: none; e.g. --max-memory 4G)")  # fmt: skip


def _selection_options(p: argparse.ArgumentParser, dtype_default: str) -> argparse._ArgumentGroup:
    g = p.add_argument_group("what to check (repeat an option to add more)")
    g.add_argument("--dtype", action="append", choices=DTYPES, metavar="DTYPE",
                   help=f"dtype to check, one of {', '.join(DTYPES)}; repeatable "
                   f"(default: {dtype_default}; e.g. --dtype float32 --dtype bfloat16)")  # fmt: skip
    g.add_argument("--scenario", action="append", metavar="GLOB",
                   help="scenario name glob, see the 'scenarios' command; repeatable "
                   "(default: all; e.g. --scenario 'weight_decay*' --scenario normal)")  # fmt: skip
    g.add_argument("--quick", action="store_true",
                   help="a fast subset of ports and scenarios (default: all of them; "
                   "e.g. for a first look)")  # fmt: skip
    return g


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="setadam-conformance", description=__doc__, formatter_class=_HelpFormatter)
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    r = sub.add_parser("run", help="check every port available on this machine",
                       description="Check this repository's own ports (those whose framework "
                       "is installed), e.g. setadam-conformance run --quick",
                       formatter_class=_HelpFormatter)  # fmt: skip
    rg = _selection_options(r, "every dtype each port supports")
    rg.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                    help="device of the ports: auto is cuda where available and cpu too "
                    "(default: auto; e.g. --device cpu)")  # fmt: skip
    rg.add_argument("--port", action="append", metavar="GLOB",
                    help="port name glob, see --list; repeatable "
                    "(default: all; e.g. --port 'ours.torch.*' --port 'ours.jax.*')")  # fmt: skip
    rg.add_argument("--list", action="store_true",
                    help="list the port checks that would run and exit (default: run them; "
                    "e.g. --list --dtype float32)")  # fmt: skip
    _output_options(r)
    _limit_options(r)
    wg = r.add_argument_group("worker processes")
    wg.add_argument("--jobs", type=_jobs, default=None, metavar="N",
                    help="ports checked at once, each in a worker process "
                    "(default: min(3, CPUs + 1); e.g. --jobs 4)")  # fmt: skip
    wg.add_argument("--fresh-workers", action="store_true",
                    help="a new worker process for every port (default: a worker is reused for "
                    "the next port until one kills it; e.g. when ports leak state)")  # fmt: skip
    r.set_defaults(func=cmd_run)
    c = sub.add_parser("check", help="check a third-party implementation MODULE:ATTR",
                       description="Check a third-party optimizer against the float64 "
                       "reference, e.g. setadam-conformance check mypkg.optim:MySETAdam "
                       "--framework torch --algorithm setadam",
                       formatter_class=_HelpFormatter)  # fmt: skip
    tg = c.add_argument_group("the target")
    tg.add_argument("target", metavar="MODULE:ATTR",
                    help="the optimizer class or factory, imported in the worker process only "
                    "(e.g. torch.optim:Adam, mypkg.optim:MySETAdam)")  # fmt: skip
    tg.add_argument(
        "--framework",
        required=True,
        choices=("torch", "jax"),
        help="the target's framework (required; e.g. --framework torch)",
    )
    tg.add_argument(
        "--algorithm",
        required=True,
        choices=("adam", "setadam"),
        help="the algorithm the target claims (required; e.g. --algorithm setadam)",
    )
    tg.add_argument("--hyper", action="append", metavar="NAME=VALUE",
                    help="a hyperparameter for the target's constructor; repeatable (default: "
                    "the reference's; e.g. --hyper lr=1e-3 --hyper eps=1e-8); where the "
                    "reference config has the field it is set there too, else a note says so")  # fmt: skip
    _sided_hyper_options(tg)
    tg.add_argument("--weight-decay-mode", choices=("l2", "decoupled"), default=None,
                    help="how the target applies weight decay (default: l2 for torch, "
                    "decoupled for jax; e.g. --weight-decay-mode decoupled for AdamW)")  # fmt: skip
    tg.add_argument("--state-map", default=None, metavar="MAP",
                    help="m=KEY,v=KEY,vmax=KEY,step=KEY: the entries of the target's state (KEY: "
                    "the end of an entry's path); 'none': do not read the state (default: found "
                    "from their values; e.g. --state-map m=exp_avg,v=exp_avg_var)")  # fmt: skip
    tg.add_argument(
        "--device",
        default="cpu",
        choices=("cpu", "cuda"),
        help="device the target runs on (default: cpu; e.g. --device cuda)",
    )
    tg.add_argument("--nprocs", type=_ranks, default=None, metavar="N",
                    help="torch: check the target sharded on N gloo ranks (NCCL with --device cuda, "
                    "one GPU per rank; untested on hardware) (parameters, gradients "
                    "and state DTensors Shard(0) over a 1-D mesh; full tensors compared every "
                    "step) (default: unsharded; e.g. --nprocs 4)")  # fmt: skip
    tg.add_argument("--devices", type=_ranks, default=None, metavar="N",
                    help="jax: place parameters, gradients and state with NamedSharding over an "
                    "N-device mesh and jit the update (on CPU: N host devices) (default: one "
                    "device; e.g. --devices 8)")  # fmt: skip
    _selection_options(c, "float64 for torch, float32 for jax")
    _output_options(c)
    _limit_options(c)
    c.set_defaults(func=cmd_check)
    s = sub.add_parser(
        "scenarios",
        help="list the scenarios",
        description="List the scenarios, e.g. setadam-conformance scenarios",
    )
    s.set_defaults(func=cmd_scenarios)
    vectors_cli.add_subparser(sub)
    from .fuzz import command as fuzz_command

    fuzz_command.add_subparser(sub, _limit_options, cmd_fuzz, _sided_hyper_options)
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
