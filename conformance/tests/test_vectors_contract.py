"""Contract vectors (manifest version 2): groups, an lr factor per step, absent gradients.

- a hand-made contract fuzz case (two groups, a schedule, absences) exported by fuzz's
  ``write_vector`` is a valid version-2 set: the reference's own outputs pass ``vectors check``,
  the outputs of the planted ``GroupLrCacheSETAdam`` (the lr of groups after the first read at
  construction) fail at step 1 in the second group, and those of its correct base port pass;
- a version-1 set stays version 1; a set with a contract vector is version 2 and validates
  against its schema; a tampered mask, count or gradient is refused (ERROR);
- what the format still cannot express is said (``VECTOR_CANNOT``), never written wrong.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conformance.adapters import third_party
from conformance.fuzz.artifacts import VECTOR_CANNOT, write_vector
from conformance.fuzz.cases import Case
from conformance.tests._contract_vectors import reference_rows, specs, write_outputs
from conformance.tests.fuzz_wrong.ports import CONTROL, GroupLrCacheSETAdam
from conformance.vectors import CONTRACT_SCHEMA_PATH
from conformance.vectors.catalogue import VectorSpec
from conformance.vectors.check import check
from conformance.vectors.export import export
from conformance.vectors.inputs import load_manifest, vector_problem

CACHE = "conformance.tests.fuzz_wrong.ports:GroupLrCacheSETAdam"
HYPER = {"tau": 0.5, "maximize": False}
#: two groups (the second its own lr), the cosine schedule, absence periods 0 / 2 / 3
CASE = Case("setadam", ((1,), (1,), (3,)), ("normal", "normal", "normal"), (0, 0, 0),
            (("tau", 0.5),), 4, 7, groups=(((0,), ()), ((1, 2), (("lr", 0.01),))),
            schedule="cosine", absent=(0, 2, 3))  # fmt: skip


def _check(directory: Path, outputs: Path, **kw: Any) -> tuple[int, str]:
    buf = io.StringIO()
    rc = check(directory, outputs, stream=buf, **kw)
    return rc, buf.getvalue()


@pytest.fixture(scope="module")
def fuzz_vector(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    spec = third_party.spec(CACHE, "torch", "setadam", hyper=HYPER)
    out = tmp_path_factory.mktemp("fuzzvec")
    write_vector(CASE, spec, out)
    return out, load_manifest(out)["vectors"][0]


def _torch_rows(
    cls: type, vec: dict[str, Any], dtype: torch.dtype = torch.float64
) -> list[dict[str, list[list[float]]]]:
    """Run a torch port over ``vec`` as a user's training loop does: one param group per vector
    group, ``group["lr"] = lr * f_k`` before step k (LambdaLR's effect), ``p.grad = None`` for
    an array without gradient."""
    shapes = [tuple(s) for s in vec["shapes"]]
    ps = [torch.tensor([float.fromhex(x) for x in a], dtype=torch.float64).reshape(s).to(dtype)
          for a, s in zip(vec["inputs"]["params"], shapes, strict=True)]  # fmt: skip
    groups, base = [], []
    for g in vec["groups"]:
        c = {k: float.fromhex(v) if isinstance(v, str) and v.startswith(("0x", "-0x")) else v
             for k, v in g["config"].items()}  # fmt: skip
        base.append(c["lr"])
        groups.append({
            "params": [ps[i] for i in g["arrays"]], "lr": c["lr"], "betas": (c["beta1"], c["beta2"]),
            "eps": c["eps"], "tau": c["tau"], "weight_decay": c["weight_decay"],
        })  # fmt: skip
    opt = cls(groups)
    rows = []
    for k, grads in enumerate(vec["inputs"]["grads"]):
        for g, lr in zip(opt.param_groups, base, strict=True):
            g["lr"] = lr * float.fromhex(vec["lr_factors"][k])
        for p, a, s in zip(ps, grads, shapes, strict=True):
            p.grad = None if a is None else torch.tensor(
                [float.fromhex(x) for x in a], dtype=torch.float64).reshape(s).to(dtype)  # fmt: skip
        opt.step()
        st = [opt.state[p] for p in ps]
        rows.append({
            "params": [p.detach().reshape(-1).tolist() for p in ps],
            "m": [_moment(s, "m", p) for s, p in zip(st, ps, strict=True)],
            "v": [_moment(s, "v", p) for s, p in zip(st, ps, strict=True)],
        })  # fmt: skip
    return rows


def _moment(state: dict[str, Any], kind: str, p: torch.Tensor) -> list[float]:
    # the outside port's own names (its v is "exp_avg_var"); never stepped: zeros
    x = state.get({"m": "exp_avg", "v": "exp_avg_var"}[kind])
    return [0.0] * p.numel() if x is None else x.reshape(-1).tolist()


def test_a_contract_fuzz_case_becomes_a_version_2_vector(
    fuzz_vector: tuple[Path, dict[str, Any]],
) -> None:
    d, vec = fuzz_vector
    assert json.loads((d / "manifest.json").read_text())["schema_version"] == 2
    assert vector_problem(vec, 2) is None
    assert vec["flags"] == ["param-groups", "lr-schedule", "absent-gradients"]
    assert [g["arrays"] for g in vec["groups"]] == [[0], [1, 2]] and "config" not in vec
    assert [float.fromhex(f) for f in vec["lr_factors"]] == [0.25, 0.5, 0.75, 1.0]
    # periods 2 and 3: array 1 skips even steps, array 2 every 3rd; counts advance with a gradient
    assert vec["active"] == [[True, True, True], [True, False, True], [True, True, False],
                             [True, False, True]]  # fmt: skip
    assert [e["counts"] for e in vec["expected"]] == [[1, 1, 1], [2, 1, 2], [3, 2, 2], [4, 2, 3]]
    assert vec["inputs"]["grads"][1][1] is None
    text = (d / "text" / "setadam-9001.txt").read_text()
    assert text.startswith("setadam-vector 2\n") and "active 2 3 1 0 1" in text


def test_check_passes_the_reference_and_fails_the_cached_group_lr(
    fuzz_vector: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    d, vec = fuzz_vector
    for name, rows in (("ref", reference_rows(vec)), ("control", _torch_rows(CONTROL, vec)),
                       ("cached", _torch_rows(GroupLrCacheSETAdam, vec))):  # fmt: skip
        (tmp_path / name).mkdir()
        write_outputs(vec, rows, tmp_path / name / f"{vec['id']}.txt")
    assert _check(d, tmp_path / "ref")[0] == 0
    rc, text = _check(d, tmp_path / "control")
    assert rc == 0, text  # a correct torch port with groups, schedule and None gradients
    rc, text = _check(d, tmp_path / "cached")
    assert rc == 1, text
    # the second group (arrays 1, 2) at step 1, where f_1 = 0.25 differs from the cached lr
    assert "first failure: step 1 param[1][0]" in text, text


def test_a_plain_set_stays_version_1_and_a_contract_set_validates(tmp_path: Path) -> None:
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(json.loads(CONTRACT_SCHEMA_PATH.read_text()))
    plain = specs()[0]
    v1 = VectorSpec("setadam-9103", "setadam", dict(plain.groups[0][1]), plain.shapes,  # type: ignore[index]
                    plain.layers, plain.params, plain.grads, ("basic",), "plain")  # fmt: skip
    m1 = export(tmp_path / "v1", [v1])
    assert m1["schema_version"] == 1 and "param-groups" not in m1["flags"]
    assert (
        (tmp_path / "v1" / "text" / "setadam-9103.txt").read_text().startswith("setadam-vector 1")
    )
    m2 = export(tmp_path / "v2", [*specs(), v1])
    assert m2["schema_version"] == 2 and "param-groups" in m2["flags"]
    validator = jsonschema.Draft202012Validator(json.loads(CONTRACT_SCHEMA_PATH.read_text()))
    assert not list(validator.iter_errors(m2))
    out = tmp_path / "out"
    out.mkdir()
    for vec in m2["vectors"]:
        write_outputs(vec, reference_rows(vec), out / f"{vec['id']}.txt")
    rc, text = _check(tmp_path / "v2", out)
    assert rc == 0 and "3 of 3 vectors pass" in text, text


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda v: v["active"][1].__setitem__(1, True), "is null but active is True"),
        (lambda v: v["expected"][2]["counts"].__setitem__(1, 3), "step counts"),
        (lambda v: v["lr_factors"].__setitem__(0, "0x1p+0"), "is not the reference's"),
        (lambda v: v["inputs"]["grads"][0].__setitem__(0, None), "is null but active is True"),
        (lambda v: v["groups"][1]["arrays"].remove(2), "do not partition 3 arrays"),
        (lambda v: v["lr_factors"].pop(), "3 lr factors for 4 steps"),
    ],
    ids=["mask", "count", "lr-factor", "gradient", "groups", "lr-factors-short"],
)
def test_a_tampered_contract_vector_is_refused(
    fuzz_vector: tuple[Path, dict[str, Any]], tmp_path: Path, edit: Any, reason: str
) -> None:
    d, _ = fuzz_vector
    manifest = json.loads((d / "manifest.json").read_text())
    vec = manifest["vectors"][0]
    out = tmp_path / "out"
    out.mkdir()
    write_outputs(vec, reference_rows(vec), out / f"{vec['id']}.txt")
    edit(vec)
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "manifest.json").write_text(json.dumps(manifest))
    rc, text = _check(tmp_path / "set", out)
    assert rc == 2 and text.startswith("ERROR") and reason in text, text


@pytest.fixture(scope="module")
def contract_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("contract")
    export(out, specs())
    return out, load_manifest(out)["vectors"][0]  # setadam-9101


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_correct_torch_port_in_a_lower_dtype_passes_its_contract_budgets(
    contract_set: tuple[Path, dict[str, Any]], tmp_path: Path, dtype: str
) -> None:
    # inputs rounded to the dtype as a user's port receives them; budgets of that dtype
    # (float16 is left out: this outside port gives inf at step 1 there, and so on a version-1
    # vector of the same inputs: it adds eps = 1e-8 in float16, where eps is 0, so a coordinate
    # whose v underflows likely gets w = 0; the port's own defect, not the contract's)
    d, vec = contract_set
    rows = _torch_rows(CONTROL, vec, getattr(torch, dtype))
    write_outputs(vec, rows, tmp_path / f"{vec['id']}.txt")
    rc, text = _check(d, tmp_path, dtype=dtype, vectors=[vec["id"]])
    assert rc == 0, text


@pytest.mark.parametrize(
    ("array", "step", "scale", "status"),
    [(1, 3, None, "FAIL"), (2, 3, 0.5, "PASS"), (2, 3, 2.0, "FAIL")],
    ids=["frozen-1ulp", "skipped-half-budget", "skipped-2-budgets"],
)
def test_near_misses_at_a_coordinate_without_gradient(
    contract_set: tuple[Path, dict[str, Any]],
    tmp_path: Path,
    array: int,
    step: int,
    scale: float | None,
    status: str,
) -> None:
    # array 1 of setadam-9101 never has a gradient: its float64 budget is exactly 0, one ulp
    # fails; array 2 has none at step 3: it carries the error bound of its step 2, no more
    d, vec = contract_set
    rows = reference_rows(vec)
    x = rows[step - 1]["params"][array][0]
    budget = float.fromhex(vec["tolerance"]["float64"]["budgets"][step - 1]["params"][array][0])
    assert (budget == 0.0) == (scale is None)
    rows[step - 1]["params"][array][0] = (
        float(np.nextafter(x, np.inf)) if scale is None else x + scale * budget
    )
    write_outputs(vec, rows, tmp_path / f"{vec['id']}.txt")
    rc, text = _check(d, tmp_path, vectors=[vec["id"]])
    assert text.split()[0] == status and rc == (0 if status == "PASS" else 1), text
    if status == "FAIL":
        assert f"first failure: step {step} param[{array}][0]" in text, text


def test_what_the_format_cannot_express_is_said(tmp_path: Path) -> None:
    s = specs()[1]
    assert s.groups is not None
    mixed = ((s.groups[0][0], {**s.groups[0][1], "amsgrad": False}), s.groups[1])
    bad = VectorSpec(s.id, s.algorithm, {}, s.shapes, s.layers, s.params, s.grads, s.flags,
                     s.description, groups=mixed, lr_factors=s.lr_factors, active=s.active)  # fmt: skip
    case = Case("adam", ((1,), (1,)), ("normal", "normal"), (0, 0), (), 2, 1,
                groups=(((0,), (("amsgrad", True),)), ((1,), ())))  # fmt: skip
    spec = third_party.spec("torch.optim:Adam", "torch", "adam")
    with pytest.raises(ValueError, match="mix amsgrad"):
        export(tmp_path / "a", [bad])
    with pytest.raises(ValueError) as exc:
        write_vector(case, spec, tmp_path / "b")
    assert str(exc.value).startswith(VECTOR_CANNOT.split("{")[0]) and "amsgrad" in str(exc.value)
