"""``fuzz --seed`` is repeatable: the same seed draws the same cases in the same order (compared
through the session's case digest), another seed draws others."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance.fuzz.command import fuzz_target
from conformance.fuzz.engine import FuzzOptions


def _session(seed: int, report: Path | None = None) -> tuple[str, int]:
    opts = FuzzOptions(max_examples=4, time_budget_s=None, seed=seed)
    out = fuzz_target("ours.torch.SETAdam[single]", report=report, options=opts)
    assert out.verdict == "pass", out.message
    assert out.case_digest
    return out.case_digest, out.examples


@pytest.mark.slow
def test_the_same_seed_draws_the_same_cases_and_another_seed_others(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    first = _session(7, tmp_path)
    assert _session(7) == first
    assert _session(8)[0] != first[0]
    summary = json.loads((tmp_path / "fuzz.json").read_text())
    assert summary["case_digest"] == first[0] and summary["options"]["seed"] == 7
