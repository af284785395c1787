"""The command line keeps the README's promises: exit codes, one-line usage errors naming the
option, report directories that never collide, the console script behaving like
``python -m conformance``, and every command of the "verify your port" guide working as written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conformance import cli
from conformance.cli import main

ROOT = Path(__file__).resolve().parents[2]
IDENTITY = "reference-selfcheck[[]identity[]]"


def _out(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    cap = capsys.readouterr()
    return cap.out, cap.err


def _usage_exit(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``argv``; it must be a usage error: exit 2, a VERDICT line last. Returns the message."""
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = int(e.code or 0)
    out, err = _out(capsys)
    assert code == 2, out + err
    last = out.strip().splitlines()[-1]
    assert last.startswith("VERDICT: error"), out
    return last + "\n" + err


@pytest.mark.parametrize("value", ["0", "-1", "1e-9", "nan", "inf", "soon"])
@pytest.mark.parametrize("option", ["--timeout", "--deadline"])
def test_bad_seconds_are_usage_errors_naming_the_option(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _usage_exit(["run", "--list", option, value], capsys)
    assert option in text


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_bad_jobs_are_usage_errors(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert "--jobs" in _usage_exit(["run", "--list", "--jobs", value], capsys)


def test_unknown_dtype_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert "--dtype" in _usage_exit(["run", "--list", "--dtype", "float8"], capsys)
    assert "--dtype" in _usage_exit(["check", "m:A", "--framework", "torch", "--algorithm",
                                     "adam", "--dtype", "float8"], capsys)  # fmt: skip


def test_report_must_be_a_writable_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "report.json"
    a_file.write_text("{}")
    for where in (a_file, a_file / "below"):
        text = _usage_exit(["run", "--port", IDENTITY, "--no-progress", "--report", str(where)],
                           capsys)  # fmt: skip
        assert "--report" in text and str(where) in text


def test_default_report_directories_never_collide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    dirs = [cli._report_dir(None) for _ in range(3)]
    assert len(set(dirs)) == 3
    assert all(d.is_dir() for d in dirs)


def test_run_device_cuda_without_a_gpu_is_an_environment_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from conformance.adapters.registry import cuda_available

    if cuda_available():
        pytest.skip("a CUDA device is present")
    code = main(["run", "--device", "cuda", "--port", "ours.jax.setadam", "--dtype", "float32",
                 "--scenario", "normal", "--quick", "--no-progress"])  # fmt: skip
    out, _ = _out(capsys)
    assert code == 2, out
    assert out.strip().splitlines()[-1].startswith("VERDICT: error") and "cuda" in out


def _check(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["check", *argv, "--quick", "--scenario", "normal", "--no-progress",
                 "--report", str(tmp_path)])  # fmt: skip
    out, _ = _out(capsys)
    assert out.strip().splitlines()[-1].startswith("VERDICT: "), out
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["exit_code"] == code
    return code, out


def test_a_hyperparameter_the_constructor_does_not_take_is_exit_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    code, out = _check(["torch.optim:Adam", "--framework", "torch", "--algorithm", "adam",
                        "--hyper", "tau=0.5"], tmp_path, capsys)  # fmt: skip
    assert code == 2, out
    assert "'tau'" in out.strip().splitlines()[-1]


def test_capturable_on_the_cpu_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    code, out = _check(["torch.optim:Adam", "--framework", "torch", "--algorithm", "adam",
                        "--hyper", "capturable=True"], tmp_path, capsys)  # fmt: skip
    assert code == 2, out
    assert "capturable" in out.strip().splitlines()[-1]


def test_jax_on_a_missing_gpu_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jax = pytest.importorskip("jax")
    pytest.importorskip("optax")
    try:
        if jax.devices("gpu"):
            pytest.skip("a GPU is present")
    except RuntimeError:
        pass
    code, out = _check(["optax:adam", "--framework", "jax", "--algorithm", "adam",
                        "--device", "cuda"], tmp_path, capsys)  # fmt: skip
    assert code == 2, out
    assert "GPU" in out.strip().splitlines()[-1]


def _console_script() -> Path:
    script = Path(sys.executable).parent / "setadam-conformance"
    if not script.is_file():
        pytest.skip("the console script is not installed next to this interpreter")
    return script


def _env() -> dict[str, str]:
    # the code of this checkout, not whichever one the environment was installed from
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_console_script_imports_from_the_working_directory(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    (tmp_path / "my_local_adam.py").write_text(
        "import torch\n\nclass MyAdam(torch.optim.Adam):\n    pass\n"
    )
    proc = subprocess.run(
        [str(_console_script()), "check", "my_local_adam:MyAdam", "--framework", "torch",
         "--algorithm", "adam", "--quick", "--scenario", "normal", "--no-progress",
         "--report", "r"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("VERDICT: conformant")


GUIDE = ROOT / "docs" / "src" / "guide" / "verify-your-port.md"
#: lines of the guide that set up the environment this suite already runs in
_SETUP = ("bash .ci/setup", ". .venv/bin/activate")


def _guide_commands() -> list[tuple[str, int]]:
    """(shell block, the exit code its documented output implies), for every ```bash block."""
    text = GUIDE.read_text()
    blocks = list(re.finditer(r"```(\w*)\n(.*?)```", text, re.S))
    out = []
    for n, m in enumerate(blocks):
        if m.group(1) not in ("bash", "sh", "shell"):
            continue
        lines = [ln for ln in m.group(2).splitlines() if not ln.strip().startswith(_SETUP)]
        shown = blocks[n + 1].group(2) if n + 1 < len(blocks) and blocks[n + 1].group(1) == "text" else ""
        code = 1 if "VERDICT: NOT conformant" in shown else 0
        if any(ln.strip() for ln in lines):
            out.append(("\n".join(lines), code))
    return out


@pytest.mark.slow
def test_every_command_of_the_guide_works_as_written(tmp_path: Path) -> None:
    commands = _guide_commands()
    assert len(commands) >= 5, "the guide's commands were not found"
    bin_dir = str(Path(sys.executable).parent)
    env = {**_env(), "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    _console_script()

    # the guide's paths are relative to a checkout: a copy of its examples, so the reports the
    # commands write land in tmp_path, not in the repository
    shutil.copytree(ROOT / "docs" / "examples", tmp_path / "docs" / "examples")

    def run(block: str) -> subprocess.CompletedProcess[str]:
        script = "set -euo pipefail\n" + block.replace("/tmp/my-report", str(tmp_path / "r"))
        return subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=900)  # fmt: skip

    with ThreadPoolExecutor(max_workers=2) as pool:
        procs = list(pool.map(run, [b for b, _ in commands]))
    for (block, want), proc in zip(commands, procs, strict=True):
        got = proc.returncode
        assert got == want, f"{block!r}: exit {got}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        assert proc.stdout.strip().splitlines()[-1].startswith("VERDICT: "), block
