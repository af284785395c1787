"""The wheel ships the library only: built from this checkout, listed, and run from its files."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: what must be in the wheel (the library and the data it reads at run time)
REQUIRED = (
    "setadam_ref/__init__.py",
    "setadam_ref/stage_names.py",
    "setadam_ref/py.typed",
    "conformance/cli.py",
    "conformance/runner.py",
    "conformance/tolerance/__init__.py",
    "conformance/py.typed",
    "conformance/schema/report.schema.json",
    "conformance/vectors/canonical/manifest.json",
    "conformance/vectors/schema/vectors-v1.schema.json",
    "conformance/vectors/schema/vectors-v2.schema.json",
    "conformance/ports/cuda/setadam.cu",
    "conformance/ports/cuda/multi_tensor.cuh",
)
#: path fragments that must not be in it
FORBIDDEN = ("/tests/", "wrong_ports", "gpu/results", ".log", "__pycache__", "oracle.py")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
         "-q", "-w", str(out)],
        capture_output=True, text=True, cwd=build, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    (whl,) = out.glob("setadam_ref-*.whl")
    return whl


def test_wheel_holds_the_library_and_nothing_else(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    missing = [r for r in REQUIRED if r not in names]
    assert not missing, f"missing from the wheel: {missing}"
    shipped = [n for n in names if any(f in n for f in FORBIDDEN)]
    assert not shipped, f"tests, wrong ports or logs in the wheel: {shipped}"
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"setadam_ref", "conformance", "setadam_ref-0.1.0.dist-info"}, tops


def test_the_unpacked_wheel_runs_without_the_checkout(wheel: Path, tmp_path: Path) -> None:
    zipfile.ZipFile(wheel).extractall(tmp_path)
    code = (
        "import sys; sys.path = [p for p in sys.path if 'work' not in p or 'site-packages' in p];"
        f"sys.path.insert(0, {str(tmp_path)!r});"
        "import conformance, setadam_ref;"
        f"assert conformance.__file__.startswith({str(tmp_path)!r}), conformance.__file__;"
        "from conformance.cli import main; raise SystemExit(main(['scenarios']))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert proc.returncode == 0, proc.stdout[-1000:] + proc.stderr[-2000:]
    assert "VERDICT: listed" in proc.stdout.splitlines()[-1]
