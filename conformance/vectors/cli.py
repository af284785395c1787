"""The ``vectors`` subcommand: ``export DIR`` and ``check DIR OUTPUTS``.

``conformance.cli`` registers it with :func:`add_subparser`; ``python -m conformance.vectors``
runs the same parser on its own (:func:`main`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from conformance.vectors.catalogue import DTYPES

EXIT_OK, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


def _export(args: argparse.Namespace) -> int:
    from conformance.vectors.export import export

    try:
        manifest = export(args.dir)
    except OSError as e:
        print(f"VERDICT: error: cannot write {args.dir}: {e}")
        return EXIT_ERROR
    n = len(manifest["vectors"])
    print(f"vectors export: wrote {n} vectors to {args.dir} (manifest.json, text/*.txt)")
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from conformance.vectors.check import check

    return check(
        args.dir,
        args.outputs,
        dtype=args.dtype,
        vectors=args.vector or None,
        algorithms=args.algorithm or None,
    )


def _no_action(parser: argparse.ArgumentParser) -> Any:
    def run(args: argparse.Namespace) -> int:
        parser.print_usage(sys.stderr)
        print("VERDICT: error: usage: choose 'vectors export' or 'vectors check'")
        return EXIT_ERROR

    return run


def configure(p: argparse.ArgumentParser) -> None:
    """Add the export/check sub-subcommands to ``p`` and set ``func`` on every level."""
    sub = p.add_subparsers(dest="vectors_command", metavar="{export,check}")
    p.set_defaults(func=_no_action(p))

    ex = sub.add_parser(
        "export",
        help="write the golden vector set (manifest.json + text/*.txt) to DIR",
        description="Compute every canonical vector with the float64 reference and write "
        "DIR/manifest.json and DIR/text/<id>.txt, deterministically.",
    )
    ex.add_argument("dir", metavar="DIR", help="where to write the set (e.g. golden/)")
    ex.set_defaults(func=_export)

    ck = sub.add_parser(
        "check",
        help="check a program's outputs (OUTPUTS/<id>.txt or .json) against the set in DIR",
        description="Compare per-step outputs written by any program with the expected values "
        "of the set in DIR. Exit 0 conformant, 1 not conformant, 2 usage/IO error.",
    )
    ck.add_argument("dir", metavar="DIR", help="a vector set, holds manifest.json (e.g. golden/)")
    ck.add_argument(
        "outputs", metavar="OUTPUTS", help="directory with <id>.txt or <id>.json (e.g. my_outputs/)"
    )
    ck.add_argument(
        "--dtype",
        choices=DTYPES,
        default=None,
        help="tolerance to apply (default: the 'dtype' record of each output, else float64; "
        "e.g. --dtype float32)",
    )
    ck.add_argument(
        "--vector",
        action="append",
        metavar="GLOB",
        help="check only vectors whose id matches GLOB; repeatable (default: all; e.g. 'setadam-*')",
    )
    ck.add_argument(
        "--algorithm",
        action="append",
        choices=("adam", "setadam"),
        help="check only vectors of this algorithm; repeatable (default: both; e.g. --algorithm adam)",
    )
    ck.set_defaults(func=_check)


def add_subparser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``vectors`` on the main CLI's subparsers; sets ``func(args) -> int``."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "vectors",
        help="export golden vectors / check a program's outputs against them",
        description="Golden vectors for ports in any language (docs: guide/vectors.md).",
    )
    configure(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conformance.vectors",
        description="Golden vectors for Adam and SET-Adam ports (docs: guide/vectors.md).",
    )
    configure(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors, 0 on --help
        return int(e.code) if isinstance(e.code, int) else EXIT_ERROR
    rc: int = args.func(args)
    return rc
