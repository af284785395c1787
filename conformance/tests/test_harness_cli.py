"""The command line: exit codes, verdict line, `run --quick` end to end with a schema-valid JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance import report
from conformance.cli import main


def _last_line(capsys: pytest.CaptureFixture[str]) -> str:
    out = capsys.readouterr().out.strip().splitlines()
    return out[-1]


def test_scenarios_lists(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenarios"]) == 0
    out = capsys.readouterr().out
    assert "rosenbrock" in out and "long_run" in out
    assert out.strip().splitlines()[-1].startswith("VERDICT:")


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert _last_line(capsys).startswith("VERDICT: error")
    with pytest.raises(SystemExit) as e:
        main(["run", "--bogus"])
    assert e.value.code == 2
    assert _last_line(capsys).startswith("VERDICT: error")
    assert main(["run", "--scenario", "nope", "--no-progress"]) == 2
    assert _last_line(capsys).startswith("VERDICT: error")


def test_check_import_error_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["check", "no_such_module_xyz:Opt", "--framework", "torch", "--algorithm",
                 "setadam", "--report", str(tmp_path)])  # fmt: skip
    assert code == 2
    assert _last_line(capsys).startswith("VERDICT: error")


def test_check_wrong_and_right_numpy_free_targets(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    args = ["--framework", "torch", "--algorithm", "adam", "--quick", "--no-progress",
            "--scenario", "normal", "--scenario", "weight_decay_l2"]  # fmt: skip
    assert main(["check", "torch.optim:Adam", *args, "--report", str(tmp_path / "a")]) == 0
    assert _last_line(capsys).startswith("VERDICT: conformant")
    # AdamW checked as if it used l2 weight decay: not conformant
    code = main(["check", "torch.optim:AdamW", *args, "--weight-decay-mode", "l2",
                 "--report", str(tmp_path / "b")])  # fmt: skip
    assert code == 1
    assert _last_line(capsys).startswith("VERDICT: NOT conformant")
    rep = json.loads((tmp_path / "b" / "report.json").read_text())
    report.validate(rep)
    assert rep["verdict"] == "not conformant" and rep["exit_code"] == 1


def test_check_jax_target(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pytest.importorskip("optax")
    code = main(["check", "optax:adam", "--framework", "jax", "--algorithm", "adam", "--quick",
                 "--no-progress", "--scenario", "normal", "--scenario", "weight_decay_decoupled",
                 "--hyper", "eps_root=0.0", "--report", str(tmp_path)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out[-1500:]
    rep = json.loads((tmp_path / "report.json").read_text())
    sc = {s["scenario"]: s for s in rep["ports"][0]["scenarios"]}
    assert sc["normal"]["status"] == "pass"
    assert sc["weight_decay_decoupled"]["status"] == "skip"  # optax.adam takes no weight_decay


def test_run_quick_end_to_end(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pytest.importorskip("jsonschema")
    code = main(["run", "--quick", "--no-progress", "--report", str(tmp_path),
                 "--port", "reference-selfcheck[[]identity[]]", "--port", "torch.optim.Adam[[]foreach[]]",
                 "--port", "ours.torch.SETAdam[[]foreach[]]", "--port", "ours.jax.setadam"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out[-2000:]
    assert out.strip().splitlines()[-1].startswith("VERDICT: conformant")
    rep = json.loads((tmp_path / "report.json").read_text())
    report.validate(rep)
    assert rep["complete"] is True and rep["summary"]["fail"] == 0
    assert (tmp_path / "report.md").read_text().startswith("# setadam-conformance report")
    names = {p["name"] for p in rep["ports"]}
    assert "torch.optim.Adam[foreach]" in names or "ours.jax.setadam" in names
    assert set(rep["worst_by_dtype"]) <= {"float64", "float32"}
