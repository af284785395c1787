"""Golden vectors: the committed canonical set is current, valid, and `vectors check` judges right.

- staleness: the canonical set regenerated into a tmp dir must equal the committed files byte
  for byte (only the provenance's environment lines may differ, see test_canonical_is_current);
- the manifest validates against the JSON Schema; the text twins hold the same numbers;
- the reference's own outputs pass (exit 0); a planted error fails (exit 1) naming the vector
  and the step; malformed outputs give exit 2.
"""

from __future__ import annotations

import difflib
import io
import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import setadam_ref
from conformance.vectors import CANONICAL_DIR, OUTPUT_SCHEMA_PATH, SCHEMA_PATH
from conformance.vectors.catalogue import FLAGS, catalogue
from conformance.vectors.check import check, expected_arrays, load_manifest
from conformance.vectors.cli import main as vectors_main
from conformance.vectors.encoding import decode_array, hex_float, is_canonical_hex, parse_float
from conformance.vectors.export import export

REGEN = "python -m conformance.vectors export conformance/vectors/canonical"
ENV_LINES = ('"numpy_version"', '"python_version"', '"python_implementation"')


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return load_manifest(CANONICAL_DIR)


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("vectors") / "set"
    export(out)
    return out


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- staleness


def test_canonical_is_current(regenerated: Path) -> None:
    """Stale vectors fail CI: regenerate and compare byte for byte.

    The provenance records the numpy and Python versions that produced the committed set; a
    different environment that reproduces every other byte (all inputs, expected values and
    budgets bit for bit) is accepted with a warning: the data are current.
    """
    committed, fresh = _files(CANONICAL_DIR), _files(regenerated)
    assert committed == fresh, f"the canonical set's file list is stale; run `{REGEN}`"
    env_only: list[str] = []
    for name in committed:
        a = (CANONICAL_DIR / name).read_bytes()
        b = (regenerated / name).read_bytes()
        if a == b:
            continue
        la, lb = a.decode().splitlines(), b.decode().splitlines()
        diff = [
            ln
            for ln in difflib.unified_diff(la, lb, lineterm="", n=0)
            if ln[:1] in "+-" and not ln.startswith(("+++", "---"))
        ]
        if name == "manifest.json" and all(ln[1:].strip().startswith(ENV_LINES) for ln in diff):
            env_only.extend(diff)
            continue
        shown = "\n".join(diff[:6])
        pytest.fail(
            f"canonical vector file {name} is stale; run `{REGEN}`. First changes:\n{shown}"
        )
    if env_only:
        warnings.warn(
            "canonical vectors were generated in another environment: " + "; ".join(env_only),
            stacklevel=1,
        )


def test_canonical_set_is_small() -> None:
    total = sum(p.stat().st_size for p in CANONICAL_DIR.rglob("*") if p.is_file())
    assert total < 1024 * 1024, f"canonical set is {total} bytes (keep it under 1 MiB)"


# ------------------------------------------------------------------------------ format


def test_manifest_validates_against_schema(manifest: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(manifest)
    jsonschema.Draft202012Validator.check_schema(json.loads(OUTPUT_SCHEMA_PATH.read_text()))


def test_schema_rejects_bad_vectors(manifest: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    small = dict(manifest, vectors=[json.loads(json.dumps(manifest["vectors"][0]))])
    validator.validate(small)
    for path, bad in (
        (("flags",), ["no-such-flag"]),
        (("id",), "setadam-1"),
        (("config", "lr"), "0.001"),  # decimal, not canonical hex
        (("config", "tau"), "0x1.00p-1"),  # trailing zero: not canonical
        (("inputs", "params"), [[1.0]]),  # numbers, not strings
    ):
        vec = json.loads(json.dumps(manifest["vectors"][0]))
        obj = vec
        for key in path[:-1]:
            obj = obj[key]
        obj[path[-1]] = bad
        with pytest.raises(jsonschema.ValidationError):
            validator.validate(dict(manifest, vectors=[vec]))


def test_schema_flags_match_catalogue(manifest: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema["$defs"]["flag"]["enum"] == list(FLAGS)
    used = {f for v in manifest["vectors"] for f in v["flags"]}
    assert used == set(FLAGS), f"flags without a vector: {set(FLAGS) - used}"
    ids = [v["id"] for v in manifest["vectors"]]
    assert len(ids) == len(set(ids))
    assert ids == [s.id for s in catalogue()]


def test_hex_encoding_round_trips() -> None:
    for x in (0.0, -0.0, 1.0, 3.0, 0.1, 1e-8, 5e-324, 2.0**-1022, 1.7976931348623157e308):
        h = hex_float(x)
        assert is_canonical_hex(h), h
        back = float.fromhex(h)
        assert back == x and np.signbit(back) == np.signbit(x)
    assert hex_float(3.0) == "0x1.8p+1" and hex_float(1.0) == "0x1p+0"
    assert parse_float("0x1.8p+1") == 3.0 and parse_float("3e0") == 3.0
    with pytest.raises(ValueError):
        parse_float("1_000")


def _read_text_vector(path: Path) -> dict[str, Any]:
    """A minimal reader of the vector text format (what a C port does with strtod)."""
    rec: dict[str, Any] = {"arrays": {}, "values": {}}
    lines = [ln.split() for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == ["setadam-vector", "1"] and lines[-1] == ["end"]
    for tok in lines[1:-1]:
        key = tok[0]
        if key.startswith(("init_",)):
            i, n = int(tok[1]), int(tok[2])
            assert len(tok) == 3 + n
            rec["values"][(key, 0, i)] = [float.fromhex(x) for x in tok[3:]]
        elif key in ("grad",) or key.startswith("expect_"):
            t, i, n = int(tok[1]), int(tok[2]), int(tok[3])
            assert len(tok) == 4 + n
            rec["values"][(key, t, i)] = [float.fromhex(x) for x in tok[4:]]
        else:
            rec[key] = tok[1:]
    return rec


def test_text_twins_hold_the_json_numbers(manifest: dict[str, Any]) -> None:
    for vec in manifest["vectors"]:
        txt = _read_text_vector(CANONICAL_DIR / vec["text_file"])
        assert txt["id"] == [vec["id"]] and txt["algorithm"] == [vec["algorithm"]]
        for k, val in vec["config"].items():
            want = str(int(val)) if isinstance(val, bool) else val
            assert txt[k] == [want], (vec["id"], k)
        vals = txt["values"]
        s0 = vec["inputs"]["initial_state"]["step"]
        for i, a in enumerate(vec["inputs"]["params"]):
            assert vals[("init_param", 0, i)] == [float.fromhex(x) for x in a]
        for k, gs in enumerate(vec["inputs"]["grads"], 1):
            for i, a in enumerate(gs):
                assert vals[("grad", s0 + k, i)] == [float.fromhex(x) for x in a]
        for e in vec["expected"]:
            for i, a in enumerate(e["params"]):
                assert vals[("expect_param", e["step"], i)] == [float.fromhex(x) for x in a]


# --------------------------------------------------------------------------------- check


def _write_outputs(
    vec: dict[str, Any], params: list[tuple[np.ndarray, ...]], states: list[Any], path: Path
) -> None:
    lines = ["setadam-output 1", f"id {vec['id']}", "dtype float64"]
    for p, st in zip(params, states, strict=True):
        for kind, arrays in (("param", p), ("m", st.m), ("v", st.v), ("vmax", st.vmax)):
            if arrays is None:
                continue
            for i, a in enumerate(arrays):
                flat = np.asarray(a, dtype=np.float64).ravel()
                vals = " ".join(float(x).hex() for x in flat)
                lines.append(f"{kind} {st.step} {i} {flat.size} {vals}".rstrip())
    lines.append("end")
    path.write_text("\n".join(lines) + "\n")


def _reference_run(vec: dict[str, Any]) -> tuple[list[tuple[np.ndarray, ...]], list[Any]]:
    """Run the reference from the manifest's inputs alone (as an outside program would)."""
    shapes = [tuple(s) for s in vec["shapes"]]
    cfg_j = vec["config"]
    kw: dict[str, Any] = {}
    for k, v in cfg_j.items():
        if k in ("beta1", "beta2"):
            continue
        kw[k] = v if isinstance(v, (bool,)) or k.endswith("_mode") else float.fromhex(v)
    kw["betas"] = (float.fromhex(cfg_j["beta1"]), float.fromhex(cfg_j["beta2"]))
    cfg = (
        setadam_ref.AdamConfig(**kw)
        if vec["algorithm"] == "adam"
        else setadam_ref.SETAdamConfig(**kw)
    )
    exp = expected_arrays(vec)
    st0 = vec["inputs"]["initial_state"]
    vmax, m0, v0, p0 = exp["vmax"], exp["m"], exp["v"], exp["param"]
    assert m0 is not None and v0 is not None and p0 is not None
    state = setadam_ref.State(
        step=st0["step"], m=m0[0], v=v0[0], vmax=None if vmax is None else vmax[0]
    )
    cur: tuple[np.ndarray, ...] = p0[0]
    layers = [tuple(layer) for layer in vec["layers"]]
    params, states = [], []
    for g in vec["inputs"]["grads"]:
        grads = [decode_array(a, s) for a, s in zip(g, shapes, strict=True)]
        cur, state, _ = setadam_ref.step(cur, grads, state, cfg, layers=layers)
        params.append(cur)
        states.append(state)
    return params, states


@pytest.fixture(scope="module")
def reference_outputs(manifest: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ref_outputs")
    for vec in manifest["vectors"]:
        params, states = _reference_run(vec)
        _write_outputs(vec, params, states, out / f"{vec['id']}.txt")
    return out


def _check(outputs: Path, *extra: str) -> tuple[int, str]:
    buf = io.StringIO()
    args: dict[str, Any] = {}
    if "--dtype" in extra:
        args["dtype"] = extra[extra.index("--dtype") + 1]
    rc = check(CANONICAL_DIR, outputs, stream=buf, **args)
    return rc, buf.getvalue()


def test_reference_outputs_pass(reference_outputs: Path, manifest: dict[str, Any]) -> None:
    rc, text = _check(reference_outputs)
    lines = text.strip().splitlines()
    assert rc == 0, text
    assert lines[-1].startswith("VERDICT: conformant"), lines[-1]
    assert sum(ln.startswith("PASS") for ln in lines) == len(manifest["vectors"])


def test_json_outputs_are_accepted(
    reference_outputs: Path, manifest: dict[str, Any], tmp_path: Path
) -> None:
    vec = manifest["vectors"][0]
    params, states = _reference_run(vec)
    steps = [
        {"step": st.step, "params": [[float(x) for x in np.ravel(a)] for a in p]}
        for p, st in zip(params, states, strict=True)
    ]
    obj = {"format": "setadam-output", "version": 1, "id": vec["id"], "steps": steps}
    (tmp_path / f"{vec['id']}.json").write_text(json.dumps(obj))
    buf = io.StringIO()
    assert check(CANONICAL_DIR, tmp_path, vectors=[vec["id"]], stream=buf) == 0, buf.getvalue()


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _plant(path: Path, kind: str, step: int, array: int, index: int, rel: float) -> None:
    """Multiply one value by (1 + rel), or write ``nan`` when rel is nan."""
    lines = path.read_text().splitlines()
    for n, ln in enumerate(lines):
        tok = ln.split()
        if tok[:3] == [kind, str(step), str(array)]:
            x = float.fromhex(tok[4 + index])
            tok[4 + index] = "nan" if rel != rel else (x * (1.0 + rel) if x else rel).hex()
            lines[n] = " ".join(tok)
            break
    else:
        raise AssertionError(f"no {kind} {step} {array} in {path}")
    path.write_text("\n".join(lines) + "\n")


def test_planted_error_fails_naming_vector_and_step(
    reference_outputs: Path, tmp_path: Path
) -> None:
    out = _copy(reference_outputs, tmp_path / "o")
    _plant(out / "setadam-0017.txt", "param", 2, 3, 4, 1e-9)
    rc, text = _check(out)
    lines = text.strip().splitlines()
    assert rc == 1, text
    bad = [ln for ln in lines if ln.startswith("FAIL")]
    assert len(bad) == 1 and "setadam-0017" in bad[0] and "step 2 param[3][4]" in bad[0], bad
    assert "ulp" in bad[0] and "budget" in bad[0]
    assert lines[-1].startswith("VERDICT: NOT conformant") and "setadam-0017" in lines[-1]


def test_planted_state_error_and_nan_fail(reference_outputs: Path, tmp_path: Path) -> None:
    out = _copy(reference_outputs, tmp_path / "o")
    _plant(out / "adam-0005.txt", "vmax", 3, 1, 0, 1e-6)
    _plant(out / "setadam-0005.txt", "param", 2, 0, 1, float("nan"))
    rc, text = _check(out)
    assert rc == 1, text
    assert "FAIL    adam-0005" in text and "step 3 vmax[1][0]" in text
    assert "FAIL    setadam-0005" in text and "step 2 param[0][1]: got nan" in text


def test_missing_output_fails(reference_outputs: Path, tmp_path: Path) -> None:
    out = _copy(reference_outputs, tmp_path / "o")
    (out / "adam-0001.txt").unlink()
    rc, text = _check(out)
    assert rc == 1 and "MISSING adam-0001" in text, text


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s.replace("setadam-output 1", "setadam-output 2", 1),
        lambda s: s.replace("\nend\n", "\n", 1),
        lambda s: s.replace("param 1 0 6 ", "param 1 0 5 ", 1),
        lambda s: s.replace("param 1 0 6 ", "param 1 0 6 zz", 1),
        lambda s: s.replace("param 1 0 6 ", "prams 1 0 6 ", 1),
        lambda s: s.replace("id setadam-0001", "id setadam-0002", 1),
        lambda s: "",
    ],
    ids=["version", "truncated", "count", "token", "record", "wrong-id", "empty"],
)
def test_malformed_output_gives_exit_2(reference_outputs: Path, tmp_path: Path, edit: Any) -> None:
    out = _copy(reference_outputs, tmp_path / "o")
    p = out / "setadam-0001.txt"
    p.write_text(edit(p.read_text()))
    rc, text = _check(out)
    assert rc == 2, text
    assert text.strip().splitlines()[-1].startswith("VERDICT: error")


def test_missing_step_is_malformed(reference_outputs: Path, tmp_path: Path) -> None:
    out = _copy(reference_outputs, tmp_path / "o")
    p = out / "setadam-0001.txt"
    p.write_text(
        "\n".join(ln for ln in p.read_text().splitlines() if not ln.startswith("param 3 "))
    )
    rc, text = _check(out)
    assert rc == 2 and "no param records for step 3" in text, text


def test_usage_errors_give_exit_2(tmp_path: Path) -> None:
    assert vectors_main(["check", str(tmp_path / "nope"), str(tmp_path)]) == 2
    assert vectors_main(["check", str(CANONICAL_DIR), str(tmp_path / "nope")]) == 2
    assert vectors_main(["check", str(CANONICAL_DIR), str(tmp_path), "--vector", "zz-*"]) == 2
    assert vectors_main(["bogus"]) == 2
    assert vectors_main([]) == 2


def test_low_precision_dtype_and_skips(reference_outputs: Path, tmp_path: Path) -> None:
    """Outputs rounded to float32 pass at --dtype float32; not-applicable vectors are skipped."""
    out = tmp_path / "f32"
    out.mkdir()
    for p in reference_outputs.iterdir():
        lines = []
        for ln in p.read_text().splitlines():
            tok = ln.split()
            if tok and tok[0] in ("param", "m", "v", "vmax"):
                vals = np.array([float.fromhex(x) for x in tok[4:]])
                with np.errstate(over="ignore"):
                    r = vals.astype(np.float32).astype(np.float64)
                tok = tok[:4] + [float(x).hex() for x in r]
            lines.append(" ".join(tok))
        (out / p.name).write_text("\n".join(lines) + "\n")
    rc, text = _check(out, "--dtype", "float32")
    assert rc == 0, text
    assert "SKIP    setadam-0016" in text and "SKIP    adam-0013" in text
    # the same outputs are far outside the float64 budgets
    rc64, _ = _check(out, "--dtype", "float64")
    assert rc64 == 1


def test_python_m_entry_point(reference_outputs: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "conformance.vectors",
            "check",
            str(CANONICAL_DIR),
            str(reference_outputs),
            "--vector",
            "adam-000[12]",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("VERDICT: conformant: 2 of 2")


def test_main_cli_delegates_vectors(reference_outputs: Path) -> None:
    cli = pytest.importorskip("conformance.cli")
    main = getattr(cli, "main", None)
    if main is None:
        pytest.skip("conformance.cli.main not available yet")
    rc = main(
        ["vectors", "check", str(CANONICAL_DIR), str(reference_outputs), "--vector", "setadam-0001"]
    )
    assert rc == 0


def test_guide_lists_every_vector_and_flag(manifest: dict[str, Any]) -> None:
    """docs/src/guide/vectors.md documents every flag and every vector id of the set."""
    guide = Path(__file__).resolve().parents[2] / "docs" / "src" / "guide" / "vectors.md"
    if not guide.is_file():
        pytest.skip("docs not present")
    text = guide.read_text(encoding="utf-8")
    missing = [f for f in FLAGS if f"| `{f}` |" not in text]
    missing += [v["id"] for v in manifest["vectors"] if f"| `{v['id']}` |" not in text]
    assert not missing, f"docs/src/guide/vectors.md does not list: {missing}"
    assert f"{len(manifest['vectors'])} vectors" in text


def test_unresolved_coordinates_are_not_judged(
    reference_outputs: Path, manifest: dict[str, Any], tmp_path: Path
) -> None:
    """An "inf" budget (the dtype cannot resolve the coordinate) neither passes nor fails."""
    vec = next(
        v
        for v in manifest["vectors"]
        if v["tolerance"]["float16"]["applicable"] and v["tolerance"]["float16"]["unresolved"]
    )
    budgets = vec["tolerance"]["float16"]["budgets"]
    where = next(
        (e["step"], i, j)
        for e in budgets
        for i, arr in enumerate(e["params"])
        for j, b in enumerate(arr)
        if b == "inf"
    )
    resolved = next(
        (e["step"], i, j)
        for e in budgets
        for i, arr in enumerate(e["params"])
        for j, b in enumerate(arr)
        if b != "inf"
    )
    out = _copy(reference_outputs, tmp_path / "o")
    path = out / f"{vec['id']}.txt"
    _plant(path, "param", *where, float("nan"))
    buf = io.StringIO()
    assert check(CANONICAL_DIR, out, dtype="float16", vectors=[vec["id"]], stream=buf) == 0
    assert "unresolved in float16" in buf.getvalue()
    _plant(path, "param", *resolved, float("nan"))
    buf = io.StringIO()
    assert check(CANONICAL_DIR, out, dtype="float16", vectors=[vec["id"]], stream=buf) == 1
