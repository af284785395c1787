"""The C99 example port (conformance/vectors/examples/c/setadam_port.c) passes `vectors check`.

Built with the system C compiler (gcc or cc; skipped when there is none) with -O2 and
-ffp-contract=off (no fused multiply-add contraction, no -ffast-math), run on the text twin of
every canonical vector, and checked with exit code 0. Builds with planted bugs, one per bug
class, must fail on the vectors flagged for that class and pass a control vector. The same
holds for the version-2 (contract) vectors of ``_contract_vectors``: groups, an lr factor per
step and absent gradients, each with its planted bugs.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest

from conformance.tests._contract_vectors import specs
from conformance.vectors import CANONICAL_DIR, HERE
from conformance.vectors.check import check
from conformance.vectors.export import export

SOURCE = HERE / "examples" / "c" / "setadam_port.c"
CFLAGS = ["-std=c99", "-O2", "-ffp-contract=off", "-Wall", "-Wextra", "-pedantic"]


def _compiler() -> str:
    for cc in ("gcc", "cc"):
        path = shutil.which(cc)
        if path:
            return path
    pytest.skip("no C compiler (gcc/cc) on this machine")


def _build(tmp: Path, source: Path, name: str) -> Path:
    exe = tmp / name
    proc = subprocess.run(
        [_compiler(), *CFLAGS, "-o", str(exe), str(source), "-lm"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr, proc.stderr
    return exe


def _planted(tmp: Path, name: str, old: str, new: str) -> Path:
    """The C port built with one textual edit (a planted bug)."""
    src = SOURCE.read_text()
    assert old in src, f"{name}: the C source changed; update the planted bug"
    bugged = tmp / f"{name}.c"
    bugged.write_text(src.replace(old, new, 1))
    return _build(tmp, bugged, name)


def _run_all(exe: Path, out: Path, vectors: Path = CANONICAL_DIR) -> None:
    out.mkdir()
    for vec in sorted((vectors / "text").glob("*.txt")):
        proc = subprocess.run(
            [str(exe), str(vec), str(out / vec.name)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert proc.returncode == 0, f"{vec.name}: {proc.stderr}"


def test_c_port_passes_vectors_check(tmp_path: Path) -> None:
    exe = _build(tmp_path, SOURCE, "setadam_port")
    _run_all(exe, tmp_path / "out")
    buf = io.StringIO()
    rc = check(CANONICAL_DIR, tmp_path / "out", stream=buf)
    text = buf.getvalue()
    assert rc == 0, text
    assert text.strip().splitlines()[-1].startswith("VERDICT: conformant")


def test_c_port_rejects_malformed_vector(tmp_path: Path) -> None:
    exe = _build(tmp_path, SOURCE, "setadam_port")
    bad = tmp_path / "bad.txt"
    bad.write_text("setadam-vector 1\nid x\nbogus 1\nend\n")
    proc = subprocess.run(
        [str(exe), str(bad), str(tmp_path / "o.txt")], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2 and "unknown record" in proc.stderr


# Each planted bug is one textual edit of the C source; the vectors whose flags target that bug
# class must fail, and a control vector that the bug does not touch must still pass. This is the
# evidence that the flags mean what docs/src/guide/vectors.md says they mean.
BUGS: list[tuple[str, str, str, list[str], list[str]]] = [
    (
        "eps-outside-sqrt",
        "den[j] = sqrt(c * V->v[j] / bc2[i] + C->eps);",
        "den[j] = sqrt(c * V->v[j] / bc2[i]) + C->eps;",
        ["setadam-0004", "setadam-0012", "setadam-0023", "setadam-0024"],
        ["adam-0001", "adam-0011", "setadam-0016"],  # Adam untouched; huge v hides eps
    ),
    (
        "no-bias-correction",
        "bc1[i] = 1.0 - pow(C->b1, (double)s); bc2[i] = 1.0 - pow(C->b2, (double)s);",
        "bc1[i] = 1.0; bc2[i] = 1.0; (void)s;",
        ["setadam-0002", "adam-0002", "setadam-0003", "adam-0003"],
        [],  # every vector uses the bias corrections
    ),
    (
        "step-counter-off-by-one",
        "bc1[i] = 1.0 - pow(C->b1, (double)s); bc2[i] = 1.0 - pow(C->b2, (double)s);",
        "bc1[i] = 1.0 - pow(C->b1, (double)(s + 1)); bc2[i] = 1.0 - pow(C->b2, (double)(s + 1));",
        ["setadam-0002", "adam-0002", "setadam-0003", "adam-0003"],
        [],  # every vector uses the bias corrections
    ),
    (
        "bias-correction-dropped-after-warmup",
        "bc1[i] = 1.0 - pow(C->b1, (double)s); bc2[i] = 1.0 - pow(C->b2, (double)s);",
        "bc1[i] = s > 1000 ? 1.0 : 1.0 - pow(C->b1, (double)s);"
        " bc2[i] = s > 1000 ? 1.0 : 1.0 - pow(C->b2, (double)s);",
        ["setadam-0003", "adam-0003"],
        ["setadam-0002", "adam-0002", "adam-0016"],
    ),
    (
        "l2-before-maximize",
        "double gj = C->maximize ? -gk[j] : gk[j];\n"
        "                if (C->wd != 0.0 && !C->decoupled) gj += C->wd * V->theta[j];",
        "double gj = gk[j];\n"
        "                if (C->wd != 0.0 && !C->decoupled) gj += C->wd * V->theta[j];\n"
        "                if (C->maximize) gj = -gj;",
        ["setadam-0011", "adam-0010"],
        ["setadam-0010", "setadam-0008", "adam-0008"],
    ),
    (
        "decoupled-decay-without-lr",
        "V->theta[j] *= 1.0 - lr * C->wd;",
        "V->theta[j] *= 1.0 - C->wd;",
        ["setadam-0009", "setadam-0025", "adam-0009"],
        ["setadam-0008", "adam-0008"],
    ),
    (
        "amsgrad-optax-as-torch",
        "if (C->amsgrad && C->amsgrad_optax) {",
        "if (0) {",
        ["adam-0006"],
        ["adam-0005", "adam-0007"],
    ),
    (
        "cos2-without-d",
        "c = (s1 * s1) / ((double)d * s2);",
        "c = (s1 * s1) / s2;",
        ["setadam-0017", "setadam-0020", "setadam-0018"],
        ["setadam-0006", "adam-0001"],  # single-element layers: d = 1
    ),
    (
        "cos2-unscaled",
        "double r = V->v[j] / vm;",
        "double r = V->v[j];",
        ["setadam-0016"],  # sum v^2 overflows float64
        ["setadam-0001", "setadam-0004"],  # tiny v^2 does not underflow in float64
    ),
    (
        "zero-layer-unguarded",
        "if (vm > 0.0) { /* all-zero layer",
        "if (1) { /* all-zero layer",
        ["setadam-0005"],
        ["setadam-0024", "setadam-0007"],  # zeros inside a layer, empty layers: unaffected
    ),
]


@pytest.mark.parametrize(
    ("name", "old", "new", "must_fail", "must_pass"), BUGS, ids=[b[0] for b in BUGS]
)
def test_planted_bug_is_caught_by_its_flagged_vectors(
    tmp_path: Path, name: str, old: str, new: str, must_fail: list[str], must_pass: list[str]
) -> None:
    exe = _planted(tmp_path, name, old, new)
    out = tmp_path / "out"
    out.mkdir()
    for vid in must_fail + must_pass:
        vec = CANONICAL_DIR / "text" / f"{vid}.txt"
        proc = subprocess.run(
            [str(exe), str(vec), str(out / vec.name)], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stderr
    buf = io.StringIO()
    check(CANONICAL_DIR, out, vectors=must_fail + must_pass, stream=buf)
    lines = {ln.split()[1]: ln.split()[0] for ln in buf.getvalue().splitlines()[:-1]}
    assert all(lines[v] == "FAIL" for v in must_fail), buf.getvalue()
    assert all(lines[v] == "PASS" for v in must_pass), buf.getvalue()


@pytest.fixture(scope="module")
def contract_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("contract") / "set"
    export(out, specs())
    return out


def test_c_port_passes_the_contract_vectors(tmp_path: Path, contract_set: Path) -> None:
    exe = _build(tmp_path, SOURCE, "setadam_port")
    _run_all(exe, tmp_path / "out", contract_set)
    buf = io.StringIO()
    rc = check(contract_set, tmp_path / "out", stream=buf)
    assert rc == 0 and "2 of 2 vectors pass" in buf.getvalue(), buf.getvalue()


# what outside ports of the contract get wrong (each caught by the harness's contract scenarios)
CONTRACT_BUGS: list[tuple[str, str, str, list[str]]] = [
    (
        "lr-schedule-in-group-0-only",
        "double lr = C->lr * V->lr_factor[k - 1];",
        "double lr = V->group_of[i] == 0 ? C->lr * V->lr_factor[k - 1] : C->lr;",
        ["setadam-9101", "adam-9102"],
    ),
    (
        "lr-schedule-ignored",
        "double lr = C->lr * V->lr_factor[k - 1];",
        "double lr = C->lr;",
        ["setadam-9101", "adam-9102"],
    ),
    (
        "first-group-config-everywhere",
        "V->group_of[i] = (int)j;",
        "V->group_of[i] = 0; (void)j;",
        ["setadam-9101", "adam-9102"],
    ),
    (
        "count-advances-without-gradient",
        "if (!on[i]) continue; /* no gradient: not stepped, its count stays */\n"
        "            V->count[i] += 1;",
        "V->count[i] += 1;\n            if (!on[i]) continue;",
        ["setadam-9101", "adam-9102"],
    ),
    (
        "absent-array-counted-in-its-layer",
        "if (!on[i]) continue; /* an array without gradient is not in its layer */",
        "",
        ["setadam-9101"],  # adam-9102 has no layer statistics
    ),
]


@pytest.mark.parametrize(
    ("name", "old", "new", "must_fail"), CONTRACT_BUGS, ids=[b[0] for b in CONTRACT_BUGS]
)
def test_planted_contract_bug_is_caught_by_the_contract_vectors(
    tmp_path: Path, contract_set: Path, name: str, old: str, new: str, must_fail: list[str]
) -> None:
    exe = _planted(tmp_path, name, old, new)
    _run_all(exe, tmp_path / "out", contract_set)
    buf = io.StringIO()
    check(contract_set, tmp_path / "out", stream=buf)
    lines = {ln.split()[1]: ln.split()[0] for ln in buf.getvalue().splitlines()[:-1]}
    assert all(lines[v] == "FAIL" for v in must_fail), buf.getvalue()
    assert all(s == "PASS" for v, s in lines.items() if v not in must_fail), buf.getvalue()
