"""``setadam-conformance fuzz TARGET``: the subcommand's options, the session, the verdict line.

TARGET is ``MODULE:ATTR`` (with ``--framework`` and ``--algorithm``, as for ``check``) or the
name of one of our ports (``setadam-conformance run --list``). Exit codes as for ``check``: 0 no
disagreement found, 1 a failing case (shrunk; files in the report directory), 2 usage or setup
error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..interface import DTYPES
from ..results import PortLocator, PortSpec
from . import artifacts
from .engine import CI_EXAMPLES, FuzzOptions, FuzzResult, fuzz


def target_spec(
    target: str,
    framework: str | None,
    algorithm: str | None,
    *,
    hyper: dict[str, Any] | None = None,
    target_hyper: dict[str, Any] | None = None,
    reference_hyper: dict[str, Any] | None = None,
    weight_decay_mode: str | None = None,
    dtype: str | None = None,
    timeout_s: float = 60.0,
    state_map: dict[str, str] | None = None,
) -> PortSpec:
    """The spec of ``target`` run in a worker: ``MODULE:ATTR`` or one of our ports by name;
    ``hyper`` goes to both sides, ``target_hyper`` to the target only, ``reference_hyper`` to
    the reference config only (as for ``check``)."""
    if ":" in target:
        from ..adapters import third_party

        if framework is None or algorithm is None:
            raise ValueError("a MODULE:ATTR target needs --framework and --algorithm")
        return third_party.remote_spec(
            target, framework, algorithm, hyper=hyper, target_hyper=target_hyper,
            reference_hyper=reference_hyper, weight_decay_mode=weight_decay_mode,
            dtype=dtype, timeout_s=timeout_s, state_map=state_map,
        )  # fmt: skip
    if hyper or target_hyper or reference_hyper:
        raise ValueError("--hyper, --target-hyper and --reference-hyper are for MODULE:ATTR "
                         "targets (our ports take the scenarios' configs)")  # fmt: skip
    from ..adapters.registry import _framework, find_spec

    spec = find_spec(target, dtype or "float64", "cpu")
    loc = PortLocator("registry", spec.name, spec.dtype, spec.device, _framework(spec.name))
    return replace(spec, locator=spec.locator or loc, timeout_s=timeout_s)


def fuzz_target(
    target: str,
    framework: str | None = None,
    algorithm: str | None = None,
    *,
    report: Path | None = None,
    options: FuzzOptions | None = None,
    **spec_kw: Any,
) -> FuzzResult:
    """Fuzz one target and (with ``report``) write its files: the entry point of a test item."""
    spec = target_spec(target, framework, algorithm, **spec_kw)
    opts = options or FuzzOptions(max_examples=CI_EXAMPLES, derandomize=True)
    out = fuzz(spec, opts)
    if report is not None:
        artifacts.write(out, spec, opts, report)
    return out


EXIT_OK, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


def add_subparser(sub: Any, limit_options: Any, func: Any, sided_hyper: Any) -> None:
    """Register ``fuzz`` (``func(args)`` runs it: the CLI's wrapper of :func:`run`;
    ``limit_options``/``sided_hyper`` add the CLI's shared options to a parser)."""
    f = sub.add_parser("fuzz", help="search for a failing case of TARGET and shrink it",
                       description="Search for a case where TARGET disagrees with the reference "
                       "and shrink it to a minimal reproducer, e.g. setadam-conformance fuzz "
                       "mypkg.optim:MySETAdam --framework torch --algorithm setadam")  # fmt: skip
    f.add_argument("target", metavar="TARGET",
                   help="MODULE:ATTR (imported in the worker only) or our port's name "
                   "(e.g. mypkg.optim:MySETAdam, 'ours.torch.SETAdam[single]')")  # fmt: skip
    f.add_argument("--framework", choices=("torch", "jax"),
                   help="the target's framework (default: from our port's name; required for "
                   "MODULE:ATTR; e.g. --framework torch)")  # fmt: skip
    f.add_argument("--algorithm", choices=("adam", "setadam"),
                   help="the algorithm the target claims (default: from our port's name; "
                   "required for MODULE:ATTR; e.g. --algorithm setadam)")  # fmt: skip
    f.add_argument("--hyper", action="append", metavar="NAME=VALUE",
                   help="a hyperparameter of both sides: the target's constructor and the "
                   "reference config; repeatable (default: none; e.g. --hyper tau=0.5)")  # fmt: skip
    sided_hyper(f)  # --target-hyper, --reference-hyper: as for check
    f.add_argument("--weight-decay-mode", choices=("l2", "decoupled"), default=None,
                   help="how the target applies weight decay (default: l2 for torch, decoupled "
                   "for jax; e.g. --weight-decay-mode decoupled)")  # fmt: skip
    f.add_argument("--dtype", default=None, choices=DTYPES,
                   help="the dtype of the cases (default: float64 for torch, float32 for jax; "
                   "e.g. --dtype float32)")  # fmt: skip
    f.add_argument("--max-examples", type=int, default=1000, metavar="N",
                   help="cases to try (default: 1000; e.g. --max-examples 200)")  # fmt: skip
    f.add_argument("--time-budget", type=float, default=60.0, metavar="SECONDS",
                   help="seconds of search; shrinking a failure runs on (default: 60; "
                   "e.g. --time-budget 300)")  # fmt: skip
    f.add_argument("--seed", type=int, default=None, metavar="S",
                   help="make the search repeatable (default: random; e.g. --seed 1)")  # fmt: skip
    f.add_argument("--database", default=None, metavar="PATH",
                   help="hypothesis example database; earlier failures are replayed first; "
                   "'none' for no database (default: REPORT/hypothesis-db; "
                   "e.g. --database ~/.fuzz-db)")  # fmt: skip
    f.add_argument("--report", metavar="DIR",
                   help="directory for fuzz.json, the shrunk case's reproducer and vector, and "
                   "the example database (default: a fresh ./reports/<timestamp>; "
                   "e.g. --report out/fuzz)")  # fmt: skip
    f.add_argument(
        "--ci",
        action="store_true",
        help=f"the ci setting: {CI_EXAMPLES} cases, derandomized, no database (default: off; "
        "e.g. --ci in a CI job)",
    )
    limit_options(f)
    f.set_defaults(func=func)


class UsageError(Exception):
    """A bad option value (the CLI turns it into exit 2)."""


def run(args: argparse.Namespace, report_dir: Callable[[str | None], Path]) -> int:
    """Run ``fuzz`` from parsed options; ``report_dir`` makes the report directory."""
    from ..adapters import third_party

    try:
        spec = target_spec(
            args.target, args.framework, args.algorithm,
            hyper=third_party.parse_hyper(args.hyper),
            target_hyper=third_party.parse_hyper(args.target_hyper, "--target-hyper"),
            reference_hyper=third_party.parse_hyper(args.reference_hyper, "--reference-hyper"),
            weight_decay_mode=args.weight_decay_mode, dtype=args.dtype,
            timeout_s=args.timeout or 60.0,
        )  # fmt: skip
    except (ValueError, TypeError, KeyError) as exc:
        raise UsageError(str(exc.args[0] if exc.args else exc)) from None
    if args.max_examples < 1:
        raise UsageError("--max-examples must be at least 1")
    outdir = report_dir(args.report)
    db: Path | None = None
    if not args.ci and args.database != "none":
        db = Path(args.database) if args.database else outdir / "hypothesis-db"
    opts = FuzzOptions(
        max_examples=CI_EXAMPLES if args.ci else args.max_examples,
        time_budget_s=None if args.ci else args.time_budget, seed=args.seed, database=db,
        derandomize=args.ci, timeout_s=args.timeout or 60.0, max_memory=args.max_memory,
    )  # fmt: skip
    out = fuzz(spec, opts)
    artifacts.write(out, spec, opts, outdir)
    print("\n".join(artifacts.terminal(out)))
    sys.stdout.flush()
    if out.verdict == "fail":
        print(f"VERDICT: fail: {spec.name} disagrees with the reference on a shrunk case "
              f"({out.case.describe() if out.case else '?'})"[:400])  # fmt: skip
        return EXIT_FAIL
    if out.verdict == "error":
        print(f"VERDICT: error: {out.message}"[:400])
        return EXIT_ERROR
    print(f"VERDICT: pass: no disagreement in {out.examples} fuzz cases (not a proof: a search "
          f"of {out.elapsed_s:.0f} s)")  # fmt: skip
    return EXIT_OK
