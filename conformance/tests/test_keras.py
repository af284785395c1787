"""keras 3 Adam/AdamW (torch backend) through the guide's adapter (docs/examples/keras_adam.py):
conformant as TF-style Adam (``--reference-hyper eps_mode=tf``, keras' eps and decoupled decay),
not conformant as torch-style Adam. Skipped, with the reason, when keras is not installed; keras
is imported only by the worker process of each check."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from conformance import cli

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("keras") is None or importlib.util.find_spec("torch") is None,
        reason="keras 3 (pip install keras) and torch are needed for the keras adapter",
    ),
    pytest.mark.slow,
]

_ARGS = ["check", "keras_adam:KerasAdam", "--framework", "torch", "--algorithm", "adam",
         "--dtype", "float32", "--hyper", "eps=1e-7", "--weight-decay-mode", "decoupled",
         "--quick", "--no-progress"]  # fmt: skip


@pytest.fixture
def examples(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(EXAMPLES)
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    monkeypatch.syspath_prepend(str(EXAMPLES))  # the worker starts with this process's path


@pytest.mark.usefixtures("examples")
def test_keras_adam_passes_as_tf_style_adam(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main([*_ARGS, "--reference-hyper", "eps_mode=tf", "--report", str(tmp_path),
                     "--scenario", "normal", "--scenario", "tiny_gradients",
                     "--scenario", "weight_decay_*", "--scenario", "amsgrad"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out[-2000:]
    rep = json.loads((tmp_path / "report.json").read_text())
    sc = {s["scenario"]: s["status"] for s in rep["ports"][0]["scenarios"]}
    assert sc == {"normal": "pass", "tiny_gradients": "pass", "weight_decay_l2": "skip",
                  "weight_decay_decoupled": "pass", "amsgrad": "pass"}  # fmt: skip


@pytest.mark.usefixtures("examples")
def test_keras_adam_is_not_torch_style_adam(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main([*_ARGS, "--report", str(tmp_path), "--scenario", "tiny_gradients"])
    out = capsys.readouterr().out
    assert code == 1, out[-2000:]
    assert out.strip().splitlines()[-1].startswith("VERDICT: NOT conformant")
