"""``setadam-conformance vectors check DIR OUTPUTS``: judge what a program wrote for a vector set.

OUTPUTS is a directory with one file per vector id, ``<id>.txt`` (text records) or ``<id>.json``,
holding the parameters (and optionally m, v, vmax) after every step; the format is in
docs/src/guide/vectors.md. Every value is compared with the expected float64 value against the
vector's tolerance for the chosen dtype (:mod:`conformance.vectors.tolerance_spec`).

Every vector is judged on its own: a malformed output file, or a manifest vector that fails
its schema or is not what the reference and the tolerance model give for its inputs
(:mod:`conformance.vectors.verify`), makes that vector ``ERROR`` with a one-line reason naming
file and record, and the other vectors still get their verdict. The exit code is the worst of
them, as ``setadam-conformance check``: 1 (not conformant) when any vector fails (a value
outside its budget, a NaN, a missing output file); else 2 when any vector is in error, when the
set itself is unusable (unreadable manifest, OUTPUTS not a directory) or when no vector passed
(nothing judged); else 0. One line per vector, then a one-line verdict as the last line.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from conformance.compare import compare_quantity
from conformance.vectors.catalogue import DTYPES
from conformance.vectors.encoding import F64Array, decode_array
from conformance.vectors.inputs import (
    KINDS,
    Malformed,
    Output,
    load_manifest,
    read_output,
    vector_problem,
)
from conformance.vectors.verify import vector_mismatch

__all__ = ["check", "expected_arrays", "load_manifest"]

EXIT_OK, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


class UsageError(Exception):
    """A problem that makes the whole check impossible (exit 2)."""


#: a malformed output file or manifest vector: that vector gets ERROR, the others their verdict
MalformedOutput = Malformed


def expected_arrays(vec: dict[str, Any]) -> dict[str, list[tuple[F64Array, ...]] | None]:
    """Per kind, the list over s = 0..T of per-array float64 arrays (s = 0: inputs)."""
    shapes = [tuple(s) for s in vec["shapes"]]

    def dec(vals: list[list[str]]) -> tuple[F64Array, ...]:
        return tuple(decode_array(v, shp) for v, shp in zip(vals, shapes, strict=True))

    st0 = vec["inputs"]["initial_state"]
    out: dict[str, list[tuple[F64Array, ...]] | None] = {
        "param": [dec(vec["inputs"]["params"])] + [dec(e["params"]) for e in vec["expected"]],
        "m": [dec(st0["m"])] + [dec(e["m"]) for e in vec["expected"]],
        "v": [dec(st0["v"])] + [dec(e["v"]) for e in vec["expected"]],
        "vmax": None,
    }
    if st0["vmax"] is not None:
        out["vmax"] = [dec(st0["vmax"])] + [dec(e["vmax"]) for e in vec["expected"]]
    return out


# ---------------------------------------------------------------------------- comparison


@dataclass
class Worst:
    fraction: float = 0.0
    ulps: float = 0.0
    where: str = ""


@dataclass
class VectorResult:
    id: str
    flags: list[str]
    status: str  # PASS | FAIL | MISSING | SKIP | ERROR
    detail: str = ""
    worst: Worst = field(default_factory=Worst)
    first_failure: str | None = None
    unresolved: int = 0  # parameter values with an "inf" budget (not judged)
    dtype: str | None = None  # the dtype judged in (None: not judged)


def _fmt(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else str(x)


def compare_vector(vec: dict[str, Any], out: Output, dtype: str) -> VectorResult:
    vid = vec["id"]
    res = VectorResult(vid, list(vec["flags"]), "PASS")
    if out.id is not None and out.id != vid:
        raise MalformedOutput(f"{out.path}: 'id {out.id}' but the file is for {vid}")
    tol = vec["tolerance"][dtype]
    exp = expected_arrays(vec)
    steps = [int(e["step"]) for e in vec["expected"]]
    shapes = [tuple(s) for s in vec["shapes"]]
    n = len(shapes)
    budgets = _budgets(tol, shapes)
    given = set(out.values)
    if "param" not in given:
        raise MalformedOutput(f"{out.path}: no 'param' records")
    for kind in sorted(given):
        if exp[kind] is None:
            raise MalformedOutput(f"{out.path}: '{kind}' records, but vector {vid} has no {kind}")
        extra = set(out.values[kind]) - set(steps)
        if extra:
            raise MalformedOutput(
                f"{out.path}: {kind} for step {min(extra)}, but {vid} has steps "
                f"{steps[0]}..{steps[-1]}"
            )
        for t, arrays in out.values[kind].items():
            unknown = sorted(set(arrays) - set(range(n)))
            if unknown:
                raise MalformedOutput(
                    f"{out.path}: {kind} of step {t} for array {unknown[0]}, but {vid} has "
                    f"arrays 0..{n - 1}"
                )
    for k, t in enumerate(steps, 1):
        for kind in KINDS:
            if kind not in given or budgets[kind] is None:
                continue
            per_step = out.values[kind].get(t)
            if per_step is None:
                raise MalformedOutput(f"{out.path}: no {kind} records for step {t}")
            for i in range(n):
                got = per_step.get(i)
                size = math.prod(shapes[i])
                if got is None:
                    raise MalformedOutput(f"{out.path}: no {kind} for step {t}, array {i}")
                if got.size != size:
                    raise MalformedOutput(
                        f"{out.path}: {kind} of step {t}, array {i} has {got.size} values, "
                        f"want {size}"
                    )
                seq = exp[kind]
                bud = budgets[kind]
                assert seq is not None and bud is not None
                ref = seq[k][i].reshape(-1)
                b = bud[k - 1][i]
                _judge(res, kind, t, i, got, ref, b, dtype)
    return res


def _budgets(
    tol: dict[str, Any], shapes: Sequence[tuple[int, ...]]
) -> dict[str, list[list[F64Array]] | None]:
    """Per kind, budgets[k-1][array] (flat) for steps k = 1..T; None when not checked."""
    out: dict[str, list[list[F64Array]] | None] = {}
    for kind, key in (("param", "params"), ("m", "m"), ("v", "v"), ("vmax", "vmax")):
        rows = []
        for entry in tol["budgets"]:
            arrays = entry.get(key)
            if arrays is None:
                break
            rows.append(
                [decode_array(a, (math.prod(shp),)) for a, shp in zip(arrays, shapes, strict=True)]
            )
        else:
            out[kind] = rows
            continue
        out[kind] = None
    return out


def _judge(
    res: VectorResult,
    kind: str,
    t: int,
    i: int,
    got: F64Array,
    ref: F64Array,
    b: F64Array,
    dtype: str,
) -> None:
    """Judge one array with the harness's comparison (:func:`conformance.compare.compare_quantity`):
    a value passes when ``|x - x_ref| <= budget``; NaN and infinities never pass; an ``"inf"``
    budget marks a coordinate the dtype cannot resolve, neither passed nor failed."""
    if got.size == 0:
        return
    if kind == "param":
        res.unresolved += int(got.size - np.count_nonzero(np.isfinite(b)))
    meas = compare_quantity(kind, got, ref, b, dtype, None, t)
    w = meas.worst
    j = int(w.array or 0)
    if w.fraction > res.worst.fraction or not res.worst.where:
        res.worst = Worst(w.fraction, w.ulps, f"step {t} {kind}[{i}][{j}]")
    if (meas.n_fail or meas.n_nonfinite) and res.first_failure is None:
        res.status = "FAIL"
        x = float(got[j])
        res.first_failure = (
            f"step {t} {kind}[{i}][{j}]: got {x.hex() if math.isfinite(x) else x}"
            f" ({_fmt(x)}), want {float(ref[j]).hex()} ({_fmt(float(ref[j]))}), "
            f"error {_fmt(abs(x - float(ref[j])))} = {_fmt(w.ulps)} ulp({dtype}) = "
            f"{_fmt(w.fraction)} x budget {_fmt(float(b[j]))}"
        )


# ------------------------------------------------------------------------------- driver


def select(
    vectors: Sequence[dict[str, Any]],
    patterns: Sequence[str] | None,
    algorithms: Sequence[str] | None,
) -> list[dict[str, Any]]:
    out = []
    for v in vectors:
        if patterns and not any(fnmatch.fnmatchcase(v["id"], p) for p in patterns):
            continue
        if algorithms and v["algorithm"] not in algorithms:
            continue
        out.append(v)
    return out


def _vector_id(vec: Any, n: int) -> str:
    vid = vec.get("id") if isinstance(vec, dict) else None
    return vid if isinstance(vid, str) and vid else f"vectors[{n}]"


def _usable(
    manifest: dict[str, Any],
    where: Path,
    patterns: Sequence[str] | None,
    algorithms: Sequence[str] | None,
) -> tuple[list[dict[str, Any]], list[VectorResult]]:
    """The selected vectors of the manifest that pass their schema and are unique, and ERROR
    results for the others (missing or repeated ids, schema violations). Only selected vectors
    are checked against the schema (the check of a large set for one vector stays fast)."""
    ok: list[dict[str, Any]] = []
    errors: list[VectorResult] = []
    seen: set[str] = set()
    for n, vec in enumerate(manifest["vectors"]):
        vid = _vector_id(vec, n)
        flags = [str(f) for f in (vec.get("flags") or [])] if isinstance(vec, dict) else []
        named = not vid.startswith("vectors[")
        alg = vec.get("algorithm") if isinstance(vec, dict) else None
        if named and not select([{"id": vid, "algorithm": alg}], patterns, algorithms):
            seen.add(vid)
            continue
        problem = vector_problem(vec, int(manifest["schema_version"]))
        if problem is None and not named:
            problem = "no 'id'"
        if problem is None and vid in seen:
            problem = f"id {vid} given twice"
        seen.add(vid)
        if problem is not None:
            errors.append(VectorResult(vid, flags, "ERROR", f"{where}: vectors[{n}]: {problem}"))
            continue
        ok.append(vec)
    return ok, errors


def _check_one(vec: dict[str, Any], out_dir: Path, dtype: str | None, where: str) -> VectorResult:
    """One vector's verdict; Malformed for a bad output file or manifest record."""
    vid = vec["id"]
    try:
        mismatch = vector_mismatch(vec)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise Malformed(f"{where}: malformed record ({type(e).__name__}: {e})"[:300]) from None
    if mismatch is not None:
        raise Malformed(f"{where}: {mismatch}")
    out = read_output(out_dir, vid)
    if out is None:
        return VectorResult(vid, list(vec["flags"]), "MISSING", f"no {vid}.txt or {vid}.json in {out_dir}")
    d = dtype or out.dtype or "float64"
    if d not in DTYPES:
        raise Malformed(f"{out.path}: unknown dtype {d!r}")
    tol = vec["tolerance"][d]
    if not tol["applicable"]:
        return VectorResult(vid, list(vec["flags"]), "SKIP", f"not applicable to {d}: {tol['reason']}")
    r = compare_vector(vec, out, d)
    w = r.worst
    r.detail = (
        f"{d} {len(vec['expected'])} steps, worst {_fmt(w.ulps)} ulp, "
        f"{_fmt(w.fraction)} of budget at {w.where}"
    )
    if r.unresolved:
        r.detail += f" ({r.unresolved} parameter values unresolved in {d})"
    if r.first_failure:
        r.detail += f"; first failure: {r.first_failure}"
    r.dtype = d
    return r


def check(
    directory: str | Path,
    outputs: str | Path,
    *,
    dtype: str | None = None,
    vectors: Sequence[str] | None = None,
    algorithms: Sequence[str] | None = None,
    stream: TextIO | None = None,
) -> int:
    """Run the check, print per-vector lines and the verdict; return the exit code."""
    import sys

    stream = sys.stdout if stream is None else stream

    def say(s: str) -> None:
        print(s, file=stream, flush=True)

    try:
        try:
            manifest = load_manifest(directory)
        except Malformed as e:
            raise UsageError(str(e)) from None
        out_dir = Path(outputs)
        if not out_dir.is_dir():
            raise UsageError(f"OUTPUTS {out_dir} is not a directory")
        if dtype is not None and dtype not in DTYPES:
            raise UsageError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
        where = Path(directory) / "manifest.json"
        chosen, results = _usable(manifest, where, vectors, algorithms)
        if not chosen and not results:
            raise UsageError("no vector matches the selection")
    except UsageError as e:
        say(f"ERROR: {e}")
        say(f"VERDICT: error: {e}")
        return EXIT_ERROR
    for r in results:
        say(f"{r.status:<7} {r.id:<13} [{','.join(r.flags)}] {r.detail}")
    index = {id(v): n for n, v in enumerate(manifest["vectors"])}
    for vec in chosen:
        label = f"{where}: vectors[{index[id(vec)]}] ({vec['id']})"
        try:
            r = _check_one(vec, out_dir, dtype, label)
        except Malformed as e:
            r = VectorResult(vec["id"], list(vec["flags"]), "ERROR", str(e))
        results.append(r)
        say(f"{r.status:<7} {r.id:<13} [{','.join(r.flags)}] {r.detail}")
    return _verdict(results, say)


def _verdict(results: Sequence[VectorResult], say: Any) -> int:
    failed = [r.id for r in results if r.status in ("FAIL", "MISSING")]
    errors = [r.id for r in results if r.status == "ERROR"]
    skipped = sum(r.status == "SKIP" for r in results)
    passed = sum(r.status == "PASS" for r in results)
    dt = ",".join(sorted({r.dtype for r in results if r.dtype})) or "-"
    tail = f"; {passed} pass, {skipped} skipped, {len(errors)} in error [{dt}]"

    def names(ids: Sequence[str]) -> str:
        return ", ".join(ids[:8]) + (", ..." if len(ids) > 8 else "")

    if failed:
        say(f"VERDICT: NOT conformant: {len(failed)} of {len(results)} vectors fail: "
            f"{names(failed)}{tail}")  # fmt: skip
        return EXIT_FAIL
    if errors:
        say(f"VERDICT: error: {len(errors)} of {len(results)} vectors could not be judged: "
            f"{names(errors)}{tail}")  # fmt: skip
        return EXIT_ERROR
    if not passed:
        say(f"VERDICT: error: no vector was judged ({skipped} skipped, not applicable) [{dt}]")
        return EXIT_ERROR
    say(
        f"VERDICT: conformant: {passed} of {len(results)} vectors pass, {skipped} skipped "
        f"(not applicable) [{dt}]"
    )
    return EXIT_OK
