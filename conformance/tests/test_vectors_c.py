"""The C99 example port (conformance/vectors/examples/c/setadam_port.c) passes `vectors check`.

Built with the system C compiler (gcc or cc; skipped when there is none) with -O2 and
-ffp-contract=off (no fused multiply-add contraction, no -ffast-math), run on the text twin of
every canonical vector, and checked with exit code 0. A second build with a planted bug (eps
outside the square root in SET-Adam) must be caught.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest

from conformance.vectors import CANONICAL_DIR, HERE
from conformance.vectors.check import check

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


def _run_all(exe: Path, out: Path) -> None:
    out.mkdir()
    for vec in sorted((CANONICAL_DIR / "text").glob("*.txt")):
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
    assert text.strip().splitlines()[-1].startswith("vectors check: CONFORMANT")


def test_c_port_with_planted_bug_is_caught(tmp_path: Path) -> None:
    src = SOURCE.read_text()
    good = "den[j] = sqrt(c * V->v[j] / bc2 + V->eps);"
    assert good in src
    bugged = tmp_path / "bugged.c"
    bugged.write_text(src.replace(good, "den[j] = sqrt(c * V->v[j] / bc2) + V->eps;"))
    exe = _build(tmp_path, bugged, "bugged")
    _run_all(exe, tmp_path / "out")
    buf = io.StringIO()
    rc = check(CANONICAL_DIR, tmp_path / "out", stream=buf)
    text = buf.getvalue()
    assert rc == 1, text
    assert "FAIL    setadam-0004" in text  # tiny gradients: eps placement dominates
    assert all("FAIL    adam-" not in ln for ln in text.splitlines())  # Adam untouched


def test_c_port_rejects_malformed_vector(tmp_path: Path) -> None:
    exe = _build(tmp_path, SOURCE, "setadam_port")
    bad = tmp_path / "bad.txt"
    bad.write_text("setadam-vector 1\nid x\nbogus 1\nend\n")
    proc = subprocess.run(
        [str(exe), str(bad), str(tmp_path / "o.txt")], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2 and "unknown record" in proc.stderr
