"""A port's steps sent to its worker in batches: one exchange carries several steps.

A free-running open-loop step needs nothing from the port's previous answer (the gradients are
the reference's), and a re-synced step starts from the reference's state, so :class:`FreeSteps`
and :class:`ResyncSteps` send the next steps in one request
(:meth:`conformance.process_session.ProcessSession.step_batch`, ``reset_step_batch``) and hand
the driver each step's outputs as the worker answers it, while the worker already runs the next
step. Isolation is that of one step per exchange: every op is acknowledged as it finishes and
each keeps the per-call timeout (:class:`conformance.process_session.Exchange`), an op that
raises ends the batch (the rest are not run), and what fails is the step whose outputs the
driver asked for.

Batches grow geometrically (1, 2, 4, ... up to :data:`MAX_BATCH` steps and
:data:`MAX_BATCH_ELEMENTS` array elements sent), so a driver that stops early (a full failure
list, an interface error) leaves at most as many steps unjudged as it judged: those are drained
(``close``), and a port lost there is lost at the step named by ``draining``. A closed loop (the
gradient at the port's own parameters), a step before a checkpoint round trip (``stops``) and a
session without batches (in-process ports) run one step per exchange, exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from .port_arrays import copies as _copies
from .reference_run import ResyncStep
from .session import PortLost, PortSession, StepOutputs

#: most steps in one exchange, and most array elements sent in one (a batch stays a few MiB)
MAX_BATCH = 128
MAX_BATCH_ELEMENTS = 1 << 20

Grads = Sequence[np.ndarray | None]


class _Batch(Protocol):
    def next(self) -> StepOutputs: ...

    @property
    def done(self) -> bool: ...


class _Batches:
    """The batches of one loop: what was sent and not yet read, the next batch's length."""

    def __init__(self, per_step: int) -> None:
        self._per_step = max(per_step, 1)
        self._batch: _Batch | None = None
        self._sent: list[tuple[int, Any]] = []  # (step, the gradient copies sent) not yet read
        self._k = 1
        #: the step being drained when the port was lost during :meth:`close`, else None
        self.draining: int | None = None

    def _count(self, left: int) -> int:
        """Steps in the next batch, ``left`` at most."""
        k = min(self._k, left, max(MAX_BATCH_ELEMENTS // self._per_step, 1))
        self._k = min(2 * self._k, MAX_BATCH)
        return max(k, 1)

    def _start(self, sent: list[tuple[int, Any]], batch: _Batch) -> tuple[Any, StepOutputs]:
        self._sent, self._batch = sent, batch
        return self._read()

    def _read(self) -> tuple[Any, StepOutputs]:
        assert self._batch is not None
        _, sent = self._sent.pop(0)
        try:
            return sent, self._batch.next()
        except BaseException:
            self._sent = []  # an op that raises ends the batch: the rest were not run
            raise

    def close(self) -> None:
        """Read what the port answered for steps sent but not judged (the driver stopped)."""
        pending, self._sent = self._sent, []
        for s, _ in pending:
            if self._batch is None or self._batch.done:
                break
            self.draining = s
            try:
                self._batch.next()
            except PortLost:
                raise
            except Exception:  # the port raised in a step no longer judged: the batch ended
                break
        self.draining = None


class FreeSteps(_Batches):
    """The port's outputs of free-running steps 1, 2, ... (see the module docstring).

    ``grads(t)`` is the gradient of step t for an open loop (None: a closed loop, whose gradient
    the driver passes to :meth:`outputs`); ``stops``: steps after which the port is asked
    something else (a batch ends there)."""

    def __init__(
        self,
        session: PortSession,
        steps: int,
        grads: Callable[[int], Grads] | None,
        size: int,
        stops: frozenset[int] = frozenset(),
    ) -> None:
        super().__init__(size)
        self.session, self.steps, self._grads, self._stops = session, steps, grads, stops

    def outputs(self, t: int, g: Grads) -> tuple[Any, StepOutputs]:
        """(the gradient copies the port was given, its outputs) of step ``t`` (in order)."""
        if self._sent:
            assert self._sent[0][0] == t
            return self._read()
        batch = getattr(self.session, "step_batch", None)
        if self._grads is None or batch is None or t in self._stops:
            sent = _copies(g)
            return sent, self.session.step_outputs(sent, False)
        last = min([self.steps, *(s for s in self._stops if s >= t)])
        last = t + self._count(last - t + 1) - 1
        todo = [(s, _copies(g if s == t else self._grads(s))) for s in range(t, last + 1)]
        return self._start(todo, batch([c for _, c in todo], False))


class ResyncSteps(_Batches):
    """The port's outputs of re-synced steps, in order (see the module docstring). ``kept``: the
    run's re-synced steps by step, read ahead into batches; None (a streamed reference run,
    whose next step does not exist yet): one step per exchange, the one being judged."""

    def __init__(
        self,
        session: PortSession,
        kept: Mapping[int, ResyncStep] | None,
        size: int,
        want_stages: bool,
    ) -> None:
        super().__init__(3 * size)
        self.session, self._kept = session, kept
        self._steps = sorted(kept or ())
        self._want = want_stages

    def outputs(self, rs: ResyncStep) -> tuple[Any, StepOutputs]:
        """(the gradient copies the port was given, its outputs) of re-synced step ``rs.t``."""
        t = rs.t
        if self._sent:
            assert self._sent[0][0] == t
            return self._read()
        batch = getattr(self.session, "reset_step_batch", None)
        if batch is None or self._kept is None:
            one = _copies(rs.grads)
            return one, self.session.reset_step(rs.params, rs.state, one, self._want)
        i = self._steps.index(t)
        todo = [self._kept[s] for s in self._steps[i : i + self._count(len(self._steps) - i)]]
        sent = [(r.t, _copies(r.grads)) for r in todo]
        calls = [(r.params, r.state, c) for r, (_, c) in zip(todo, sent, strict=True)]
        return self._start(sent, batch(calls, self._want))
