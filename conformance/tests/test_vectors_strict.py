"""Golden-vector checking is strict and total: every malformed input gets a one-line error naming
file and record, every well-formed file still gets its verdict, the exit code is the worst.

The outputs are written the way a port in another language would: text records from the
expected values of the committed set (the port is "right"), then damaged one way per test.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from conformance.vectors import CANONICAL_DIR
from conformance.vectors.check import check
from conformance.vectors.encoding import hex_float

IDS = ("setadam-0001", "setadam-0002", "adam-0001")


def _manifest() -> dict[str, Any]:
    return json.loads((CANONICAL_DIR / "manifest.json").read_text())


def _text_output(vec: dict[str, Any]) -> str:
    """What a correct port writes: the expected values, as text records."""
    lines = ["setadam-output 1", f"id {vec['id']}", "dtype float64"]
    for e in vec["expected"]:
        for kind, key in (("param", "params"), ("m", "m"), ("v", "v")):
            for i, a in enumerate(e[key]):
                lines.append(f"{kind} {e['step']} {i} {len(a)} {' '.join(a)}")
    return "\n".join(lines + ["end"]) + "\n"


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    for vec in _manifest()["vectors"]:
        if vec["id"] in IDS:
            (out / f"{vec['id']}.txt").write_text(_text_output(vec))
    return out


def _run(outputs: Path, vectors: Any = IDS, directory: Path = CANONICAL_DIR) -> tuple[int, list[str]]:
    buf = io.StringIO()
    rc = check(directory, outputs, vectors=list(vectors), stream=buf)
    return rc, buf.getvalue().strip().splitlines()


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def _first_param_token(path: Path) -> str:
    line = next(ln for ln in path.read_text().splitlines() if ln.startswith("param 1 0 "))
    return line.split()[4]


def test_correct_outputs_pass(outputs: Path) -> None:
    rc, lines = _run(outputs)
    assert rc == 0, lines
    assert sum(ln.startswith("PASS") for ln in lines) == len(IDS)


@pytest.mark.parametrize(
    "token, says",
    [
        ("0x1p+99999", "overflows float64"),
        ("1e400", "overflows float64"),
        ("\u0663", "non-ASCII"),  # ARABIC-INDIC DIGIT THREE, which float() would read as 3
        ("1_000", "not a number"),
    ],
)
def test_bad_numbers_are_errors_naming_file_and_line(outputs: Path, token: str, says: str) -> None:
    p = outputs / "setadam-0001.txt"
    _edit(p, _first_param_token(p), token)
    rc, lines = _run(outputs)
    bad = [ln for ln in lines if ln.startswith("ERROR")]
    assert rc == 2 and len(bad) == 1, lines
    assert f"{p}:" in bad[0] and says in bad[0] and "setadam-0001" in bad[0]
    # every other file still got its verdict
    assert sum(ln.startswith("PASS") for ln in lines) == len(IDS) - 1


@pytest.mark.parametrize("array", ["7", "-1", "\u0661"])
def test_records_for_an_unknown_array_are_errors(outputs: Path, array: str) -> None:
    p = outputs / "setadam-0002.txt"
    text = p.read_text().replace("\nend\n", f"\nparam 1 {array} 1 0x1p+0\nend\n")
    p.write_text(text)
    rc, lines = _run(outputs)
    bad = [ln for ln in lines if ln.startswith("ERROR")]
    assert rc == 2 and len(bad) == 1 and "setadam-0002" in bad[0], lines


def test_a_repeated_id_record_is_an_error(outputs: Path) -> None:
    p = outputs / "adam-0001.txt"
    _edit(p, "id adam-0001\n", "id adam-0001\nid adam-0001\n")
    rc, lines = _run(outputs)
    assert rc == 2 and any(ln.startswith("ERROR") and "adam-0001" in ln for ln in lines), lines


def _json_output(vec: dict[str, Any], steps_value: Any = None) -> dict[str, Any]:
    steps = [{"step": e["step"], "params": [[float.fromhex(x) for x in a] for a in e["params"]]}
             for e in vec["expected"]]  # fmt: skip
    return {"format": "setadam-output", "version": 1, "id": vec["id"], "steps": steps_value or steps}


def test_json_outputs_huge_integers_deep_nesting_and_oversize(outputs: Path) -> None:
    vec = next(v for v in _manifest()["vectors"] if v["id"] == "setadam-0001")
    (outputs / "setadam-0001.txt").unlink()
    js = outputs / "setadam-0001.json"
    obj = _json_output(vec)
    text = json.dumps(obj).replace(repr(obj["steps"][0]["params"][0][0]), "9" * 401, 1)
    for damaged, says in (
        (text, "overflows float64"),
        ("[" * 100_000 + "]" * 100_000, "nested deeper"),
        (json.dumps(obj).replace("1", "NaN", 0) + " " * (17 * 2**20), "bytes, more than"),
        (json.dumps(obj).replace('"step": 1,', '"step": 1, "x": NaN,', 1), "not standard JSON"),
    ):
        js.write_text(damaged)
        rc, lines = _run(outputs)
        bad = [ln for ln in lines if ln.startswith("ERROR")]
        assert rc == 2 and len(bad) == 1 and str(js) in bad[0] and says in bad[0], lines[-3:]
        assert sum(ln.startswith("PASS") for ln in lines) == len(IDS) - 1


def test_a_malformed_file_does_not_hide_a_real_failure(outputs: Path) -> None:
    _edit(outputs / "setadam-0001.txt", "setadam-output 1", "setadam-output 2")
    p = outputs / "adam-0001.txt"
    tok = _first_param_token(p)
    _edit(p, tok, (float.fromhex(tok) * (1 + 1e-6)).hex())
    rc, lines = _run(outputs)
    assert rc == 1, lines  # the worst of (2: one file malformed, 1: one vector wrong) is a FAIL
    assert any(ln.startswith("FAIL") and "adam-0001" in ln for ln in lines)
    assert any(ln.startswith("ERROR") and "setadam-0001" in ln for ln in lines)
    assert lines[-1].startswith("VERDICT: NOT conformant") and "1 in error" in lines[-1]


def _vector_set(tmp_path: Path, edit: Any) -> Path:
    d = tmp_path / "set"
    shutil.copytree(CANONICAL_DIR, d)
    m = json.loads((d / "manifest.json").read_text())
    edit(m)
    (d / "manifest.json").write_text(json.dumps(m))
    return d


def _inflate(m: dict[str, Any]) -> None:
    vec = next(v for v in m["vectors"] if v["id"] == "adam-0001")
    for entry in vec["tolerance"]["float64"]["budgets"]:
        entry["params"] = [["inf"] * len(a) for a in entry["params"]]


def test_a_manifest_whose_budgets_are_not_the_models_is_refused(
    tmp_path: Path, outputs: Path
) -> None:
    """Budgets of "inf" would let any output pass: the vector is an error, not a pass."""
    d = _vector_set(tmp_path, _inflate)
    p = outputs / "adam-0001.txt"
    tok = _first_param_token(p)
    _edit(p, tok, (float.fromhex(tok) + 1.0).hex())  # a wrong output
    rc, lines = _run(outputs, directory=d)
    bad = [ln for ln in lines if ln.startswith("ERROR")]
    assert rc == 2 and len(bad) == 1 and "adam-0001" in bad[0] and "tolerance model" in bad[0]
    assert not any(ln.split()[:2] == ["PASS", "adam-0001"] for ln in lines)


def test_a_manifest_with_replaced_expected_values_is_refused(tmp_path: Path, outputs: Path) -> None:
    def replace(m: dict[str, Any]) -> None:
        vec = next(v for v in m["vectors"] if v["id"] == "setadam-0002")
        x = float.fromhex(vec["expected"][0]["params"][0][0])
        vec["expected"][0]["params"][0][0] = hex_float(x + 0.5)

    rc, lines = _run(outputs, directory=_vector_set(tmp_path, replace))
    bad = [ln for ln in lines if ln.startswith("ERROR")]
    assert rc == 2 and len(bad) == 1 and "setadam-0002" in bad[0] and "not the reference" in bad[0]


@pytest.mark.parametrize("damage", ["duplicate id", "missing id", "schema"])
def test_manifest_records_that_fail_get_one_line_each(
    tmp_path: Path, outputs: Path, damage: str
) -> None:
    def edit(m: dict[str, Any]) -> None:
        vs = m["vectors"]
        i = next(n for n, v in enumerate(vs) if v["id"] == "setadam-0002")
        if damage == "duplicate id":
            vs.append(json.loads(json.dumps(vs[i])))
        elif damage == "missing id":
            del vs[i]["id"]
        else:
            vs[i]["shapes"] = "three"

    d = _vector_set(tmp_path, edit)
    rc, lines = _run(outputs, vectors=["*"], directory=d)
    bad = [ln for ln in lines if ln.startswith("ERROR")]
    assert rc in (1, 2) and len(bad) == 1 and "manifest.json: vectors[" in bad[0], lines[-4:]
    # the vectors whose outputs were written and whose records are fine still pass
    passed = {ln.split()[1] for ln in lines if ln.startswith("PASS")}
    assert {"setadam-0001", "adam-0001"} <= passed


def test_a_manifest_that_is_not_json_is_a_one_line_error(tmp_path: Path, outputs: Path) -> None:
    d = tmp_path / "set"
    shutil.copytree(CANONICAL_DIR, d)
    (d / "manifest.json").write_text('{"format": "setadam-golden-vectors", "vectors": [')
    rc, lines = _run(outputs, directory=d)
    assert rc == 2 and len(lines) == 2 and "manifest.json" in lines[0], lines
    assert lines[-1].startswith("VERDICT: error")


def test_nothing_judged_is_not_conformant(tmp_path: Path) -> None:
    """A selection of vectors all skipped (not applicable) judges nothing: exit 2."""
    out = tmp_path / "o"
    out.mkdir()
    m = _manifest()
    vec = next(v for v in m["vectors"] if not v["tolerance"]["float16"]["applicable"])
    text = _text_output(vec).replace("dtype float64", "dtype float16")
    (out / f"{vec['id']}.txt").write_text(text)
    rc, lines = _run(out, vectors=[vec["id"]])
    assert rc == 2 and lines[0].startswith("SKIP"), lines
