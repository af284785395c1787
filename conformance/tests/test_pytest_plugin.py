"""The pytest plugin (``pytest --setadam-target``) run as a third-party suite would run it: one
item per scenario and dtype, failing with the diagnosis, ``-k`` and ``-n 2`` (pytest-xdist); and
inactive without ``--setadam-target``. The Python API behind it is :func:`conformance.check_target`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

WRONG = "conformance.wrong_ports.torch_ports:IgnoresWeightDecay"  # ignores l2 weight decay
RIGHT = "conformance.wrong_ports.torch_ports:StagedSETAdam"  # a correct port (must accept)
SCENARIOS = ["--setadam-scenario", "normal", "--setadam-scenario", "weight_decay_l2"]


def _pytest(tmp_path: Path, *args: str) -> tuple[int, str, dict[str, str]]:
    """Run pytest in ``tmp_path`` (a third party's checkout); (exit code, output, outcomes)."""
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", *args]
    p = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    outcomes = {m[1]: m[0] for m in re.findall(r"^(PASSED|FAILED|SKIPPED) (\S+)", out, re.M)}
    return p.returncode, out, outcomes


def test_the_plugin_is_inactive_without_a_target(tmp_path: Path) -> None:
    (tmp_path / "test_theirs.py").write_text("def test_one():\n    assert True\n")
    code, out, outcomes = _pytest(tmp_path)
    assert code == 0 and outcomes == {"test_theirs.py::test_one": "PASSED"}, out
    code, out, _ = _pytest(tmp_path, "--help")
    assert code == 0 and "--setadam-target=MODULE:ATTR" in out


def test_a_wrong_port_fails_one_item_per_failing_scenario_in_parallel(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("xdist")
    code, out, outcomes = _pytest(tmp_path, "--setadam-target", WRONG, "--setadam-quick",
                                  *SCENARIOS, "-n", "2")  # fmt: skip
    assert code == 1, out
    assert outcomes == {
        "setadam-conformance::normal[float64]": "PASSED",
        "setadam-conformance::weight_decay_l2[float64]": "FAILED",
    }, out
    # the failure message is the diagnosis, naming the cause and the report
    assert "likely cause: weight_decay_ignored" in out and "report.html]" in out, out


def test_a_correct_port_passes_and_k_selects(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    code, out, outcomes = _pytest(tmp_path, "--setadam-target", RIGHT, "--setadam-quick",
                                  *SCENARIOS, "-k", "normal")  # fmt: skip
    assert code == 0, out
    assert outcomes == {"setadam-conformance::normal[float64]": "PASSED"}, out
    assert "1 deselected" in out, out


def test_a_conftest_can_fix_the_options_as_the_guide_shows(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(
        "def pytest_configure(config):\n"
        "    opt = config.option\n"
        "    if opt.setadam_target is None:\n"
        f"        opt.setadam_target = {RIGHT!r}\n"
        "        opt.setadam_dtype = ['float64', 'float32']\n"
        "        opt.setadam_scenario = ['normal']\n"
    )
    code, out, _ = _pytest(tmp_path, "--collect-only")
    assert code == 0, out
    items = re.findall(r"^setadam-conformance::\S+", out, re.M)
    assert items == ["setadam-conformance::normal[float64]", "setadam-conformance::normal[float32]"]


def test_check_target_rejects_bad_arguments_before_running_anything() -> None:
    from conformance import check_target

    with pytest.raises(ValueError, match="MODULE:ATTR"):
        check_target("no_colon", framework="torch", algorithm="adam")
    with pytest.raises(ValueError, match="no scenario matches"):
        check_target("m:A", framework="torch", algorithm="adam", scenarios=["nope*"])


def test_the_guides_api_script_runs_once_without_a_main_guard(tmp_path: Path) -> None:
    """The guide's snippet calls ``check_target`` at a script's top level, with no
    ``if __name__ == "__main__"``: the spawned worker must not run the script again (it would
    spawn from its own bootstrap and report an error beside the real verdict)."""
    script = tmp_path / "check_my_port.py"
    script.write_text(
        "from conformance import check_target\n"
        f"r = check_target({WRONG!r}, framework='torch', algorithm='setadam',\n"
        "                 scenarios=['normal', 'weight_decay_l2'])\n"
        "print('VERDICT', r.verdict, r.exit_code)\n"
    )
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root}
    p = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-2000:]
    assert re.findall(r"^VERDICT .*$", out, re.M) == ["VERDICT not conformant 1"], out[-2000:]
    assert "bootstrapping phase" not in out, out[-2000:]


def test_the_fuzz_item_fails_with_the_shrunk_case(tmp_path: Path) -> None:
    # the planted tiny-layer bug no default scenario shows (conformance/tests/test_fuzz.py)
    pytest.importorskip("torch")
    target = "conformance.tests.fuzz_wrong.ports:TinyLayerTauSETAdam"
    code, out, outcomes = _pytest(
        tmp_path, "--setadam-target", target, "--setadam-hyper", "tau=0.5",
        "--setadam-hyper", "maximize=False", "--setadam-fuzz", "240", "--setadam-fuzz-seed", "1",
        "--setadam-report", str(tmp_path / "r"), "-k", "fuzz",
    )  # fmt: skip
    assert code == 1, out
    assert outcomes == {"setadam-conformance::fuzz[float64]": "FAILED"}, out
    assert "shrunk in" in out and "arrays: [1]" in out, out
    assert (tmp_path / "r" / "fuzz-float64" / "reproducer.py").is_file()
