"""Strict readers of a vector set's manifest and of a program's output files.

Anything malformed raises :class:`Malformed` with a one-line message naming the file and the
record (``OUTPUTS/adam-0001.txt:12: ...``, ``manifest.json: vectors[3] (adam-0004): ...``):
files over a size limit, JSON that is not standard (``NaN`` literals), nested deeper than
:data:`MAX_DEPTH` or holding a number that overflows float64, numbers with non-ASCII digits or
that overflow (``0x1p+99999``, ``1e400``), unknown records, repeated ``id`` or ``dtype``
records, and a manifest that fails its schema (when ``jsonschema`` is installed; the
recomputation of every vector in :mod:`conformance.vectors.verify` checks the rest).
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from conformance.vectors import (
    CONTRACT_SCHEMA_PATH,
    FORMAT_NAME,
    OUTPUT_FORMAT_NAME,
    SCHEMA_PATH,
    SCHEMA_VERSION,
    SCHEMA_VERSIONS,
)
from conformance.vectors.encoding import F64Array, parse_float

KINDS = ("param", "m", "v", "vmax")
#: the largest output file read (a vector's outputs are a few KiB)
MAX_OUTPUT_BYTES = 16 * 2**20
#: the largest manifest read (the canonical one is under 1 MiB)
MAX_MANIFEST_BYTES = 256 * 2**20
#: the deepest JSON nesting accepted (a manifest needs 7 levels, an output file 5)
MAX_DEPTH = 16
_UINT = re.compile(r"[0-9]+")


class Malformed(Exception):
    """A file that cannot be read as its documented format (the message names file and record)."""


def _read_text(path: Path, limit: int) -> str:
    try:
        size = path.stat().st_size
        if size > limit:
            raise Malformed(f"{path}: {size} bytes, more than the {limit} this checker reads")
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise Malformed(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise Malformed(f"cannot read {path}: {e.strerror or e}") from None


def _json_float(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):
        raise ValueError(f"the number {text[:40]} overflows float64")
    return x


def _json_int(text: str) -> int | float:
    n = int(text)
    try:
        float(n)
    except OverflowError:
        raise ValueError(f"the integer of {len(text)} digits overflows float64") from None
    return n


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not standard JSON (write it as the string \"{name.lower()}\")")


def _depth(obj: Any) -> int:
    deepest, stack = 0, [(obj, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, d)
            if d > MAX_DEPTH:
                return d
            items = node.values() if isinstance(node, dict) else node
            stack.extend((x, d + 1) for x in items)
    return deepest


def read_json(path: Path, limit: int) -> Any:
    """Standard JSON of at most ``limit`` bytes and :data:`MAX_DEPTH` levels, finite numbers."""
    text = _read_text(path, limit)
    try:
        obj = json.loads(
            text, parse_float=_json_float, parse_int=_json_int, parse_constant=_no_constant
        )
    except RecursionError:
        raise Malformed(f"{path}: JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:  # JSONDecodeError included
        raise Malformed(f"{path}: not valid JSON: {e}") from None
    if _depth(obj) > MAX_DEPTH:
        raise Malformed(f"{path}: JSON nested deeper than {MAX_DEPTH} levels")
    return obj


# ------------------------------------------------------------------------------ the set


@functools.lru_cache(maxsize=8)
def _validator(part: str, version: int = SCHEMA_VERSION) -> Any:
    """A compiled validator of the manifest schema of ``version``: ``"top"`` (vectors unchecked)
    or ``"vector"`` (one entry of ``vectors``); None when jsonschema is not installed."""
    try:
        import jsonschema  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return None
    path = SCHEMA_PATH if version == SCHEMA_VERSION else CONTRACT_SCHEMA_PATH
    schema = json.loads(path.read_text())
    if part == "top":
        schema["properties"] = dict(schema["properties"], vectors={"type": "array", "minItems": 1})
    else:
        schema = {"$schema": schema.get("$schema"), "$defs": schema["$defs"],
                  "$ref": "#/$defs/vector"}  # fmt: skip
    return jsonschema.Draft202012Validator(schema)


def _schema_errors(obj: Any, part: str, version: int = SCHEMA_VERSION) -> str | None:
    """The first schema violation of ``obj`` (None when valid or jsonschema is missing)."""
    validator = _validator(part, version)
    if validator is None:
        return None
    import jsonschema

    err = jsonschema.exceptions.best_match(validator.iter_errors(obj))
    if err is None:
        return None
    where = "/".join(str(p) for p in err.absolute_path) or "top level"
    return f"{where}: {err.message[:200]}"


def load_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest's top level checked (format, version, schema without the vectors); the
    vectors are checked one by one by :func:`vector_problem`."""
    path = Path(directory) / "manifest.json"
    obj = read_json(path, MAX_MANIFEST_BYTES)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT_NAME:
        raise Malformed(f"{path} is not a golden-vector manifest (format != {FORMAT_NAME!r})")
    version = obj.get("schema_version")
    if isinstance(version, bool) or version not in SCHEMA_VERSIONS:
        raise Malformed(
            f"{path}: schema_version {version!r} is not supported (this checker reads versions "
            f"{', '.join(map(str, SCHEMA_VERSIONS))})"
        )
    if (problem := _schema_errors(obj, "top", version)) is not None:
        raise Malformed(f"{path}: fails its schema at {problem}")
    return obj


def vector_problem(vec: Any, version: int = SCHEMA_VERSION) -> str | None:
    """Why one entry of ``manifest["vectors"]`` fails the vector definition of the schema of
    ``version`` (the manifest's), or None."""
    if not isinstance(vec, dict):
        return f"a {type(vec).__name__}, not a vector object"
    return _schema_errors(vec, "vector", version)


# ------------------------------------------------------------------------ output files


@dataclass
class Output:
    """What a program wrote for one vector."""

    path: Path
    id: str | None = None
    dtype: str | None = None
    # kind -> step -> array index -> flat values
    values: dict[str, dict[int, dict[int, F64Array]]] = field(default_factory=dict)


def _put(out: Output, kind: str, step: int, arr: int, vals: F64Array, where: str) -> None:
    per_step = out.values.setdefault(kind, {}).setdefault(step, {})
    if arr in per_step:
        raise Malformed(f"{where}: {kind} of step {step}, array {arr} given twice")
    per_step[arr] = vals


def _numbers(tokens: list[str], where: str) -> F64Array:
    try:
        return np.array([parse_float(x) for x in tokens], dtype=np.float64)
    except ValueError as e:
        raise Malformed(f"{where}: {e}") from None


def read_text_output(path: Path) -> Output:
    out = Output(path)
    lines = _read_text(path, MAX_OUTPUT_BYTES).splitlines()
    header_seen = ended = False
    for lineno, line in enumerate(lines, 1):
        where = f"{path}:{lineno}"
        tok = line.split()
        if not tok or tok[0].startswith("#"):
            continue
        if ended:
            raise Malformed(f"{where}: text after 'end'")
        if not header_seen:
            if tok != [OUTPUT_FORMAT_NAME, "1"]:
                raise Malformed(
                    f"{where}: the first record must be '{OUTPUT_FORMAT_NAME} 1', got {line[:60]!r}"
                )
            header_seen = True
            continue
        key = tok[0]
        if key == "end" and len(tok) == 1:
            ended = True
        elif key in ("id", "dtype") and len(tok) == 2:
            if getattr(out, key) is not None:
                raise Malformed(f"{where}: a second '{key}' record")
            setattr(out, key, tok[1])
        elif key in KINDS:
            if len(tok) < 4:
                raise Malformed(f"{where}: want '{key} STEP ARRAY COUNT values...'")
            if not all(_UINT.fullmatch(t) for t in tok[1:4]):
                raise Malformed(
                    f"{where}: STEP, ARRAY and COUNT must be non-negative integers in ASCII "
                    f"digits, got {' '.join(tok[1:4])[:60]!r}"
                )
            step, arr, count = int(tok[1]), int(tok[2]), int(tok[3])
            if count != len(tok) - 4:
                raise Malformed(f"{where}: COUNT is {count} but {len(tok) - 4} values follow")
            _put(out, key, step, arr, _numbers(tok[4:], where), where)
        else:
            raise Malformed(f"{where}: unknown record {line[:60]!r}")
    if not header_seen:
        raise Malformed(f"{path}: empty file (want a first record '{OUTPUT_FORMAT_NAME} 1')")
    if not ended:
        raise Malformed(f"{path}: no 'end' record (truncated output?)")
    return out


def _json_number(x: Any) -> str:
    """A JSON value of an output array as a token :func:`parse_float` judges."""
    if isinstance(x, bool) or not isinstance(x, (int, float, str)):
        raise ValueError(f"not a number: {x!r}"[:80])
    return x if isinstance(x, str) else repr(float(x))


def read_json_output(path: Path) -> Output:
    out = Output(path)
    obj = read_json(path, MAX_OUTPUT_BYTES)
    if (
        not isinstance(obj, dict)
        or obj.get("format") != OUTPUT_FORMAT_NAME
        or obj.get("version") != 1
    ):
        raise Malformed(f"{path}: want an object with format {OUTPUT_FORMAT_NAME!r}, version 1")
    for key in ("id", "dtype"):
        if obj.get(key) is not None and not isinstance(obj[key], str):
            raise Malformed(f"{path}: '{key}' must be a string")
    out.id = obj.get("id")
    out.dtype = obj.get("dtype")
    steps = obj.get("steps")
    if not isinstance(steps, list):
        raise Malformed(f"{path}: 'steps' must be a list")
    for n, entry in enumerate(steps):
        where = f"{path}: steps[{n}]"
        step = entry.get("step") if isinstance(entry, dict) else None
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise Malformed(f"{where}: want an object with a non-negative integer 'step'")
        for key, jkey in (("param", "params"), ("m", "m"), ("v", "v"), ("vmax", "vmax")):
            arrays = entry.get(jkey)
            if arrays is None:
                continue
            if not isinstance(arrays, list) or not all(isinstance(a, list) for a in arrays):
                raise Malformed(f"{where}.{jkey}: want a list of arrays")
            for i, a in enumerate(arrays):
                try:
                    tokens = [_json_number(x) for x in a]
                except ValueError as e:
                    raise Malformed(f"{where}.{jkey}[{i}]: {e}") from None
                _put(out, key, step, i, _numbers(tokens, f"{where}.{jkey}[{i}]"), where)
    return out


def read_output(outputs: Path, vid: str) -> Output | None:
    """The output file of vector ``vid`` (txt preferred), None when there is none."""
    txt, js = outputs / f"{vid}.txt", outputs / f"{vid}.json"
    if txt.is_file():
        return read_text_output(txt)
    if js.is_file():
        return read_json_output(js)
    return None
