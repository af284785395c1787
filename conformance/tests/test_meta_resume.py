"""The resume family earns its place: checkpoints that lose part of the state mid-run.

The planted ports (``conformance.wrong_ports.outside_checkpoint``) take every step right and
write their own ``state_dict``/``load_state_dict``; each must fail ``resume`` on the parameters
of the free run after the checkpoint, and pass every older scenario. Our ports, torch.optim and
optax must pass it; a port with no checkpoint, or one whose checkpoint cannot be loaded, is
skipped with the reason (never judged silently).
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("torch")

from conformance import scenarios as S
from conformance.adapters import registry
from conformance.results import PortResult
from conformance.runner import check_port
from conformance.tests._factories import torch_factory
from conformance.tests._older import check_planted
from conformance.tests._older import older as older_scenarios
from conformance.wrong_ports import outside_checkpoint as C
from conformance.wrong_ports.outside_torch import PORTS
from setadam_ref import stage_names as N

#: the scenarios a port must pass (its checkpoint bug shows after a resume only)
OLDER = older_scenarios()
K = S.get("resume").resume_after
assert K is not None


def _check(cls: Any, scenarios: tuple[str, ...]) -> PortResult:
    return check_planted(cls, "float64", scenarios)


def _spec(name: str) -> Any:
    (spec,) = [s for s in registry.available_ports()[0] if s.name == name and s.dtype == "float32"]
    return spec


def test_resume_is_listed_and_not_older() -> None:
    assert "resume" in {s.name for s in S.select(None)} and "resume" not in OLDER
    assert 0 < K < S.get("resume").quick_steps


@pytest.mark.parametrize(
    "name", ["ours.torch.SETAdam[foreach]", "torch.optim.AdamW[fused]", "optax.adam"]
)
def test_our_torch_optim_and_optax_ports_pass_resume(name: str) -> None:
    spec = _spec(name)
    r = check_port(spec, scenarios=["resume"], quick=True, diagnose=False)
    (sr,) = r.scenarios
    assert sr.status == "pass", (sr.reason, r.failures)
    assert any("checkpoint round trip after step" in n for n in sr.notes)


@pytest.mark.parametrize("port", sorted(C.PLANTED))
def test_planted_checkpoint_bug_is_caught_by_resume_only(port: str) -> None:
    cls = getattr(C, port)
    caught = _check(cls, ("resume",))
    (sr,) = caught.scenarios
    assert sr.status == "fail"
    # on the parameters, in the free run, from the first step after the checkpoint on
    stages = {(f.mode, f.stage) for f in caught.failures}
    assert ("free", N.PARAMS) in stages, caught.failures
    assert min(f.step or 0 for f in caught.failures) == K + 1
    older = _check(cls, OLDER)
    missed = [s.scenario for s in older.scenarios if s.status not in ("pass", "skip")]
    assert not missed, older.failures


class _Schedule:
    """An author's object kept in the optimizer's state: torch.load's default loader refuses it."""


class UnloadableCheckpointSETAdam(PORTS["DictSETAdam"]):  # type: ignore[misc]
    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd["schedule"] = _Schedule()
        return sd


class _NoCheckpointPort:
    """A port exposing the interface only (no ``resume``): a wrapper as a third party writes."""

    def __init__(self, inner: Any) -> None:
        self._inner, self.name, self.dtype, self.device = inner, "plain", inner.dtype, "cpu"

    def __getattr__(self, attr: str) -> Any:
        if attr in ("reset", "step", "params", "state", "stages"):
            return getattr(self._inner, attr)
        raise AttributeError(attr)


def test_a_port_without_a_usable_checkpoint_is_skipped_with_the_reason() -> None:
    (sr,) = _check(UnloadableCheckpointSETAdam, ("resume",)).scenarios
    assert sr.status == "skip" and sr.reason.startswith("resume not run:"), sr.reason
    assert "torch.save/torch.load" in sr.reason
    make = torch_factory(PORTS["DictSETAdam"], "float64")
    r = check_port(lambda cfg: _NoCheckpointPort(make(cfg)), "setadam", None, ["resume"],
                   quick=True, dtype="float64", diagnose=False)  # fmt: skip
    (sr,) = r.scenarios
    assert sr.status == "skip" and "no resume()" in sr.reason, sr.reason
