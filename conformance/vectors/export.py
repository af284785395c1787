"""``setadam-conformance vectors export DIR``: compute the canonical vectors with the reference.

Writes, deterministically (the same bytes on every run and machine that produce the same
float64 results):

- ``DIR/manifest.json``: metadata and all arrays (canonical hex strings), validated against
  ``conformance/vectors/schema/vectors-v1.schema.json``;
- ``DIR/text/<id>.txt``: the same vector in the flat text format a C program reads with
  ``strtod`` (docs/src/guide/vectors.md).

No date and no host name are recorded; the provenance names the reference version and the numpy
and Python versions that produced the set.
"""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from conformance.vectors import (
    CONTRACT_SCHEMA_VERSION,
    FORMAT_NAME,
    SCHEMA_VERSION,
    contract_vectors,
)
from conformance.vectors.catalogue import CONTRACT_FLAGS, DTYPES, FLAGS, VectorSpec, catalogue
from conformance.vectors.encoding import F64Array, encode_array, hex_float, record
from conformance.vectors.tolerance_spec import (
    MODEL_DESCRIPTION,
    tolerance_record,
    vector_tolerances,
)

JSONDict = dict[str, Any]


def _config_obj(spec: VectorSpec) -> Any:
    return contract_vectors.config_obj(spec.algorithm, dict(spec.config))


#: fields added after the format was fixed: written only when not at their default, so that
#: every vector exported before them stays byte for byte what it was (absent means the default)
_OMITTED_AT_DEFAULT = frozenset({"eps_mode"})


def _config_json(cfg: Any) -> JSONDict:
    """All fields of the config record; floats as hex, betas split into beta1/beta2."""
    import dataclasses

    out: JSONDict = {}
    for f in dataclasses.fields(cfg):
        val = getattr(cfg, f.name)
        if f.name in _OMITTED_AT_DEFAULT and val == f.default:
            continue
        if f.name == "betas":
            out["beta1"] = hex_float(val[0])
            out["beta2"] = hex_float(val[1])
        elif isinstance(val, bool) or isinstance(val, str):
            out[f.name] = val
        else:
            out[f.name] = hex_float(float(val))
    return out


def compute(spec: VectorSpec) -> JSONDict:
    """Run the reference over one vector's inputs; the vector's JSON object."""
    import setadam_ref

    if spec.contract:
        return compute_contract(spec)

    cfg = _config_obj(spec)
    params = tuple(np.array(p, dtype=np.float64) for p in spec.params)
    if spec.initial_state is None:
        state = setadam_ref.init(params, cfg)
    else:
        s0 = spec.initial_state
        state = setadam_ref.State(step=s0.step, m=s0.m, v=s0.v, vmax=s0.vmax)
    state0 = state
    traj_params: list[tuple[F64Array, ...]] = [params]
    traj_states = [state]
    traces = []
    cur = params
    for g in spec.grads:
        cur, state, tr = setadam_ref.step(cur, g, state, cfg, layers=spec.layers, trace=True)
        traj_params.append(cur)
        traj_states.append(state)
        traces.append(tr)

    def enc(arrays: Sequence[F64Array]) -> list[list[str]]:
        return [encode_array(a) for a in arrays]

    expected = []
    for p, st in zip(traj_params[1:], traj_states[1:], strict=True):
        expected.append(
            {
                "step": int(st.step),
                "params": enc(p),
                "m": enc(st.m),
                "v": enc(st.v),
                "vmax": None if st.vmax is None else enc(st.vmax),
            }
        )
    obj: JSONDict = {
        "id": spec.id,
        "algorithm": spec.algorithm,
        "flags": list(spec.flags),
        "description": spec.description,
        "config": _config_json(cfg),
        "shapes": [list(s) for s in spec.shapes],
        "layers": [list(layer) for layer in spec.layers],
        "steps": len(spec.grads),
        "text_file": f"text/{spec.id}.txt",
        "inputs": {
            "params": enc(params),
            "initial_state": {
                "step": int(state0.step),
                "m": enc(state0.m),
                "v": enc(state0.v),
                "vmax": None if state0.vmax is None else enc(state0.vmax),
            },
            "grads": [enc(g) for g in spec.grads],
        },
        "expected": expected,
        "tolerance": vector_tolerances(spec, cfg, traj_params, traj_states, traces),
    }
    return obj


def _enc(arrays: Sequence[F64Array]) -> list[list[str]]:
    return [encode_array(a) for a in arrays]


def compute_contract(spec: VectorSpec) -> JSONDict:
    """A contract vector's JSON object (:mod:`conformance.vectors.contract_vectors`): the
    version-1 fields, ``groups`` for ``config``, ``lr_factors``, ``active``, null for an absent
    gradient and each array's step count after every step."""
    f64 = contract_vectors.run(spec, "float64")  # the trajectory, and the float64 budgets
    traj = f64[0]
    (p0, s0), n = traj[0], len(spec.shapes)
    step0 = int(s0.steps[0]) if n else 0
    vmax = s0.vmax is not None
    expected: list[JSONDict] = [
        {"step": step0 + k, "params": _enc(p), "m": _enc(st.m), "v": _enc(st.v),
         "vmax": _enc(st.vmax) if st.vmax is not None else None, "counts": list(st.steps)}
        for k, (p, st) in enumerate(traj[1:], 1)
    ]  # fmt: skip
    act = spec.active
    grads = [
        [encode_array(g[i]) if act is None or act[k][i] else None for i in range(n)]
        for k, g in enumerate(spec.grads)
    ]
    head: JSONDict = {"id": spec.id, "algorithm": spec.algorithm, "flags": list(spec.flags),
                      "description": spec.description}  # fmt: skip
    fields = contract_vectors.contract_fields(spec, _config_json)
    if "groups" not in fields:
        head["config"] = _config_json(_config_obj(spec))
    head["groups"] = fields.pop("groups", None)
    obj: JSONDict = {k: v for k, v in head.items() if v is not None}
    obj.update(
        shapes=[list(s) for s in spec.shapes], layers=[list(x) for x in spec.layers],
        steps=len(spec.grads), **fields, text_file=f"text/{spec.id}.txt",
        inputs={
            "params": _enc(p0),
            "initial_state": {"step": step0, "m": _enc(s0.m), "v": _enc(s0.v),
                              "vmax": _enc(s0.vmax) if s0.vmax is not None else None},
            "grads": grads,
        },
        expected=expected,
        tolerance=tolerance_record(
            spec, lambda d: (f64 if d == "float64" else contract_vectors.run(spec, d))[1],
            [e["step"] for e in expected], vmax,
        ),
    )  # fmt: skip
    return obj


def text_twin(vec: JSONDict) -> str:
    """The flat text form of one vector (grammar in docs/src/guide/vectors.md)."""
    v2 = any(k in vec for k in ("groups", "lr_factors", "active"))
    lines = [
        f"setadam-vector {CONTRACT_SCHEMA_VERSION if v2 else 1}",
        f"# {vec['id']}: {vec['description']}",
        f"id {vec['id']}",
        f"algorithm {vec['algorithm']}",
    ]
    lines.extend(contract_vectors.config_lines(vec.get("config", {})))
    shapes: list[list[int]] = vec["shapes"]
    sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
    lines.append(f"arrays {len(shapes)}")
    for i, s in enumerate(shapes):
        lines.append(record("array", i, sizes[i], len(s), *s))
    lines.append(f"layers {len(vec['layers'])}")
    for j, layer in enumerate(vec["layers"]):
        lines.append(record("layer", j, len(layer), *layer))
    lines.extend(contract_vectors.text_records(vec, "groups", 0, 0))
    lines.append(f"steps {vec['steps']}")
    inp = vec["inputs"]
    st0 = inp["initial_state"]
    lines.append(f"state_step {st0['step']}")

    def arrays(key: str, values: list[list[str] | None], step: int | None = None) -> None:
        for i, vals in enumerate(values):
            if vals is None:  # an absent gradient (version 2): no record
                continue
            head = (key, step, i, len(vals)) if step is not None else (key, i, len(vals))
            lines.append(record(*(str(h) for h in head), values=vals))

    arrays("init_param", inp["params"])
    arrays("init_m", st0["m"])
    arrays("init_v", st0["v"])
    if st0["vmax"] is not None:
        arrays("init_vmax", st0["vmax"])
    for k, g in enumerate(inp["grads"], 1):
        lines.extend(contract_vectors.text_records(vec, "step", int(st0["step"]) + k, k))
        arrays("grad", g, int(st0["step"]) + k)
    for e in vec["expected"]:
        arrays("expect_param", e["params"], e["step"])
        arrays("expect_m", e["m"], e["step"])
        arrays("expect_v", e["v"], e["step"])
        if e["vmax"] is not None:
            arrays("expect_vmax", e["vmax"], e["step"])
        if "counts" in e:
            lines.append(record("expect_count", e["step"], len(e["counts"]), *e["counts"]))
    lines.append("end")
    return "\n".join(lines) + "\n"


def build_manifest(specs: Sequence[VectorSpec] | None = None) -> JSONDict:
    import setadam_ref

    specs = catalogue() if specs is None else specs
    # a set without contract vectors stays version 1, byte for byte what it was
    v2 = any(s.contract for s in specs)
    return {
        "schema_version": CONTRACT_SCHEMA_VERSION if v2 else SCHEMA_VERSION,
        "format": FORMAT_NAME,
        "generator": {
            "command": "setadam-conformance vectors export DIR",
            "module": "conformance.vectors.export",
        },
        "provenance": {
            "reference": "setadam_ref",
            "reference_version": str(getattr(setadam_ref, "__version__", "unknown")),
            "numpy_version": np.__version__,
            "python_version": platform.python_version(),
            "python_implementation": sys.implementation.name,
        },
        "encoding": {
            "float": "canonical-hex",
            "array_order": "C",
            "note": "every float64 is a string: float.hex without trailing fraction zeros "
            "(C: strtod / printf %a); arrays are flattened in C (row-major) order",
        },
        "dtypes": list(DTYPES),
        "tolerance_model": MODEL_DESCRIPTION,
        "flags": {**FLAGS, **CONTRACT_FLAGS} if v2 else dict(FLAGS),
        "vectors": [compute(s) for s in specs],
    }


def _dump(obj: object, indent: int) -> str:
    """JSON with objects indented and leaf lists (no nested containers) on one line."""
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{inner}{json.dumps(k)}: {_dump(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list):
        if all(not isinstance(x, (list, dict)) for x in obj):
            return json.dumps(obj, separators=(",", ":"), ensure_ascii=True)
        items = [f"{inner}{_dump(x, indent + 1)}" for x in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(obj, ensure_ascii=True)


def dumps(obj: object) -> str:
    """The manifest's bytes: deterministic, ASCII, LF line ends, final newline."""
    return _dump(obj, 0) + "\n"


def export(directory: str | Path, specs: Sequence[VectorSpec] | None = None) -> JSONDict:
    """Write the set to ``directory`` (created if needed); returns the manifest."""
    out = Path(directory)
    manifest = build_manifest(specs)
    (out / "text").mkdir(parents=True, exist_ok=True)
    _write(out / "manifest.json", dumps(manifest))
    for vec in manifest["vectors"]:
        _write(out / vec["text_file"], text_twin(vec))
    return manifest


def _write(path: Path, text: str) -> None:
    # newline="\n": the same bytes on every platform.
    with open(path, "w", encoding="ascii", newline="\n") as fh:
        fh.write(text)
