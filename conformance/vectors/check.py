"""``setadam-conformance vectors check DIR OUTPUTS``: judge what a program wrote for a vector set.

OUTPUTS is a directory with one file per vector id, ``<id>.txt`` (text records) or ``<id>.json``,
holding the parameters (and optionally m, v, vmax) after every step; the format is in
docs/src/guide/vectors.md. Every value is compared with the expected float64 value against the
vector's tolerance for the chosen dtype (:mod:`conformance.vectors.tolerance_spec`).

Exit codes, as ``setadam-conformance check``: 0 conformant, 1 not conformant (a value outside
its budget, a NaN, a missing output file), 2 usage or I/O error (unreadable set, malformed
output file). One line per vector, then a one-line verdict as the last line.
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from conformance.compare import compare_quantity
from conformance.vectors import FORMAT_NAME, OUTPUT_FORMAT_NAME, SCHEMA_VERSION
from conformance.vectors.catalogue import DTYPES
from conformance.vectors.encoding import F64Array, decode_array, parse_float

KINDS = ("param", "m", "v", "vmax")
EXIT_OK, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


class UsageError(Exception):
    """A problem that makes the check impossible (exit 2)."""


class MalformedOutput(UsageError):
    """An output file that cannot be read as the documented format (exit 2)."""


# ------------------------------------------------------------------------------ the set


def load_manifest(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / "manifest.json"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from e
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(obj, dict) or obj.get("format") != FORMAT_NAME:
        raise UsageError(f"{path} is not a golden-vector manifest (format != {FORMAT_NAME!r})")
    if obj.get("schema_version") != SCHEMA_VERSION:
        raise UsageError(
            f"{path}: schema_version {obj.get('schema_version')!r} is not supported "
            f"(this checker reads version {SCHEMA_VERSION})"
        )
    return obj


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


# ------------------------------------------------------------------------ output files


@dataclass
class Output:
    path: Path
    id: str | None = None
    dtype: str | None = None
    # kind -> step -> array index -> flat values
    values: dict[str, dict[int, dict[int, F64Array]]] = field(default_factory=dict)


def _put(out: Output, kind: str, step: int, arr: int, vals: F64Array, where: str) -> None:
    per_step = out.values.setdefault(kind, {}).setdefault(step, {})
    if arr in per_step:
        raise MalformedOutput(f"{where}: {kind} of step {step}, array {arr} given twice")
    per_step[arr] = vals


def read_text_output(path: Path) -> Output:
    out = Output(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise MalformedOutput(f"cannot read {path}: {e}") from e
    header_seen = ended = False
    for lineno, line in enumerate(lines, 1):
        where = f"{path}:{lineno}"
        tok = line.split()
        if not tok or tok[0].startswith("#"):
            continue
        if ended:
            raise MalformedOutput(f"{where}: text after 'end'")
        if not header_seen:
            if tok != [OUTPUT_FORMAT_NAME, "1"]:
                raise MalformedOutput(
                    f"{where}: the first record must be '{OUTPUT_FORMAT_NAME} 1', got {line[:60]!r}"
                )
            header_seen = True
            continue
        key = tok[0]
        if key == "end" and len(tok) == 1:
            ended = True
        elif key == "id" and len(tok) == 2:
            out.id = tok[1]
        elif key == "dtype" and len(tok) == 2:
            out.dtype = tok[1]
        elif key in KINDS:
            if len(tok) < 4:
                raise MalformedOutput(f"{where}: want '{key} STEP ARRAY COUNT values...'")
            try:
                step, arr, count = int(tok[1]), int(tok[2]), int(tok[3])
            except ValueError as e:
                raise MalformedOutput(f"{where}: STEP, ARRAY and COUNT must be integers") from e
            if count != len(tok) - 4:
                raise MalformedOutput(f"{where}: COUNT is {count} but {len(tok) - 4} values follow")
            try:
                vals = np.array([parse_float(x) for x in tok[4:]], dtype=np.float64)
            except ValueError as e:
                raise MalformedOutput(f"{where}: {e}") from e
            _put(out, key, step, arr, vals, where)
        else:
            raise MalformedOutput(f"{where}: unknown record {line[:60]!r}")
    if not header_seen:
        raise MalformedOutput(f"{path}: empty file (want a first record '{OUTPUT_FORMAT_NAME} 1')")
    if not ended:
        raise MalformedOutput(f"{path}: no 'end' record (truncated output?)")
    return out


def read_json_output(path: Path) -> Output:
    out = Output(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MalformedOutput(f"cannot read {path} as JSON: {e}") from e
    if (
        not isinstance(obj, dict)
        or obj.get("format") != OUTPUT_FORMAT_NAME
        or obj.get("version") != 1
    ):
        raise MalformedOutput(
            f"{path}: want an object with format {OUTPUT_FORMAT_NAME!r}, version 1"
        )
    out.id = obj.get("id")
    out.dtype = obj.get("dtype")
    steps = obj.get("steps")
    if not isinstance(steps, list):
        raise MalformedOutput(f"{path}: 'steps' must be a list")
    for n, entry in enumerate(steps):
        where = f"{path}: steps[{n}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("step"), int):
            raise MalformedOutput(f"{where}: want an object with an integer 'step'")
        for key, jkey in (("param", "params"), ("m", "m"), ("v", "v"), ("vmax", "vmax")):
            arrays = entry.get(jkey)
            if arrays is None:
                continue
            if not isinstance(arrays, list) or not all(isinstance(a, list) for a in arrays):
                raise MalformedOutput(f"{where}.{jkey}: want a list of arrays")
            for i, a in enumerate(arrays):
                try:
                    vals = np.array(
                        [
                            x
                            if isinstance(x, (int, float)) and not isinstance(x, bool)
                            else parse_float(str(x))
                            if isinstance(x, str)
                            else _bad(x)
                            for x in a
                        ],
                        dtype=np.float64,
                    )
                except ValueError as e:
                    raise MalformedOutput(f"{where}.{jkey}[{i}]: {e}") from e
                _put(out, key, entry["step"], i, vals, where)
    return out


def _bad(x: object) -> float:
    raise ValueError(f"not a number: {x!r}")


def read_output(outputs: Path, vid: str) -> Output | None:
    """The output file of vector ``vid`` (txt preferred), None when there is none."""
    txt, js = outputs / f"{vid}.txt", outputs / f"{vid}.json"
    if txt.is_file():
        return read_text_output(txt)
    if js.is_file():
        return read_json_output(js)
    return None


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
    status: str  # PASS | FAIL | MISSING | SKIP
    detail: str = ""
    worst: Worst = field(default_factory=Worst)
    first_failure: str | None = None
    unresolved: int = 0  # parameter values with an "inf" budget (not judged)


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
        manifest = load_manifest(directory)
        out_dir = Path(outputs)
        if not out_dir.is_dir():
            raise UsageError(f"OUTPUTS {out_dir} is not a directory")
        if dtype is not None and dtype not in DTYPES:
            raise UsageError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
        chosen = select(manifest["vectors"], vectors, algorithms)
        if not chosen:
            raise UsageError("no vector matches the selection")
        results: list[VectorResult] = []
        dtypes_seen: set[str] = set()
        for vec in chosen:
            vid = vec["id"]
            out = read_output(out_dir, vid)
            if out is None:
                r = VectorResult(
                    vid, list(vec["flags"]), "MISSING", f"no {vid}.txt or {vid}.json in {out_dir}"
                )
            else:
                d = dtype or out.dtype or "float64"
                if d not in DTYPES:
                    raise MalformedOutput(f"{out.path}: unknown dtype {d!r}")
                dtypes_seen.add(d)
                tol = vec["tolerance"][d]
                if not tol["applicable"]:
                    r = VectorResult(
                        vid, list(vec["flags"]), "SKIP", f"not applicable to {d}: {tol['reason']}"
                    )
                else:
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
            results.append(r)
            say(f"{r.status:<7} {r.id:<13} [{','.join(r.flags)}] {r.detail}")
    except UsageError as e:
        say(f"ERROR: {e}")
        say(f"VERDICT: error: {e}")
        return EXIT_ERROR
    failed = [r.id for r in results if r.status in ("FAIL", "MISSING")]
    skipped = sum(r.status == "SKIP" for r in results)
    passed = sum(r.status == "PASS" for r in results)
    dt = ",".join(sorted(dtypes_seen)) or "-"
    if failed:
        names = ", ".join(failed[:8]) + (", ..." if len(failed) > 8 else "")
        say(
            f"VERDICT: NOT conformant: {len(failed)} of {len(results)} vectors fail: "
            f"{names}; {passed} pass, {skipped} skipped [{dt}]"
        )
        return EXIT_FAIL
    say(
        f"VERDICT: conformant: {passed} of {len(results)} vectors pass, {skipped} skipped "
        f"(not applicable) [{dt}]"
    )
    return EXIT_OK
