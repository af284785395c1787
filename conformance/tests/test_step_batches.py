"""Batched free-running steps keep the isolation of one step per exchange (issue 15).

A port that raises, exits or hangs at its sixth step, inside a batch (steps 4-7), is answered for
steps 1-5 and fails at step 6 with the cause a one-step exchange gives; a driver that stops early
drains the batch and the worker stays in step with the parent.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conformance.adapters import third_party
from conformance.process_session import ProcessSession
from conformance.session import PortDied, PortHung, PortRaised
from conformance.step_batches import FreeSteps
from setadam_ref import AdamConfig

HERE = Path(__file__).parent / "misbehaving"
G = [np.array([0.5, -0.25, 2.0])]


@pytest.fixture
def session(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ProcessSession]:
    monkeypatch.syspath_prepend(str(HERE))  # a spawned worker starts from the parent's path
    spec = third_party.remote_spec(f"late:{request.param}", "torch", "adam", timeout_s=3.0)
    assert spec.locator is not None
    ses = ProcessSession(spec.locator, 3.0)
    ses.make(AdamConfig())
    ses.reset([np.ones(3)], None)
    yield ses
    ses.close()


def _run(ses: ProcessSession, upto: int) -> tuple[FreeSteps, list[int]]:
    steps = FreeSteps(ses, 20, lambda t: G, 3)
    done = []
    for t in range(1, upto + 1):
        sent, out = steps.outputs(t, G)
        assert out.params is not None and len(sent) == 1  # the copies of G sent
        done.append(t)
    return steps, done


@pytest.mark.parametrize(
    ("session", "error", "text"),
    [
        ("Raises", PortRaised, "late failure"),
        ("Exits", PortDied, "exited with code 3"),
        ("Hangs", PortHung, "no answer within 3 s"),
    ],
    indirect=["session"],
)
def test_a_late_failure_is_the_step_it_happens_in(
    session: ProcessSession, error: type[Exception], text: str
) -> None:
    steps, done = _run(session, 5)
    assert done == [1, 2, 3, 4, 5]
    with pytest.raises(error, match=text):
        steps.outputs(6, G)
    steps.close()  # nothing left to read: the batch ended at the failing op


@pytest.mark.parametrize("session", ["Fine"], indirect=True)
def test_an_early_stop_drains_the_batch(session: ProcessSession) -> None:
    steps, _ = _run(session, 5)  # steps 6 and 7 of the batch 4-7 sent, not read
    steps.close()
    assert steps.draining is None
    out = session.step_outputs([g.copy() for g in G], False)  # the worker is in step
    assert out.state is not None and out.state.step == 8
