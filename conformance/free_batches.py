"""Free-running steps sent to a port's worker in batches: one exchange carries several steps.

A free-running open-loop step needs nothing from the port's previous answer (the gradients are
the reference's), so :class:`FreeSteps` sends the next steps' gradients in one request
(:meth:`conformance.process_session.ProcessSession.step_batch`) and hands the driver each step's
outputs as the worker answers it, while the worker already runs the next step. Isolation is that
of one step per exchange: every op is acknowledged as it finishes and each keeps the per-call
timeout (:class:`conformance.process_session.Exchange`), an op that raises ends the batch (the
rest are not run), and what fails is the step whose outputs the driver asked for.

Batches grow geometrically (1, 2, 4, ... up to :data:`MAX_BATCH` steps and
:data:`MAX_BATCH_ELEMENTS` gradient elements), so a driver that stops early (a full failure list,
an interface error) leaves at most as many steps unjudged as it judged: those are drained
(:meth:`FreeSteps.close`), and a port lost there is lost at the step named by
:attr:`FreeSteps.draining`. A closed loop (the gradient at the port's own parameters), a step
before a checkpoint round trip (``stops``) and a session without batches (in-process ports) run
one step per exchange, exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from .port_arrays import copies as _copies
from .session import PortLost, PortSession, StepOutputs

#: most steps in one exchange, and most gradient elements (so a batch stays a few MiB)
MAX_BATCH = 128
MAX_BATCH_ELEMENTS = 1 << 20


class _Batch(Protocol):
    def next(self) -> StepOutputs: ...

    @property
    def done(self) -> bool: ...


Grads = Sequence[np.ndarray | None]


class FreeSteps:
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
        self.session, self.steps, self._grads = session, steps, grads
        self._size, self._stops = max(size, 1), stops
        self._batch: _Batch | None = None
        self._sent: list[tuple[int, Any]] = []  # (step, the copies sent) not yet read
        self._k = 1
        #: the step being drained when the port was lost during :meth:`close`, else None
        self.draining: int | None = None

    def outputs(self, t: int, g: Grads) -> tuple[Any, StepOutputs]:
        """(the gradient copies the port was given, its outputs) of step ``t`` (in order)."""
        if self._sent:
            assert self._batch is not None and self._sent[0][0] == t
            return self._read()
        batch = getattr(self.session, "step_batch", None)
        if self._grads is None or batch is None or t in self._stops:
            sent = _copies(g)
            return sent, self.session.step_outputs(sent, False)
        last = min(self.steps, t + self._k - 1, t + max(MAX_BATCH_ELEMENTS // self._size, 1) - 1)
        last = min([last, *(s for s in self._stops if s >= t)])
        self._k = min(2 * self._k, MAX_BATCH)
        self._sent = [(s, _copies(g if s == t else self._grads(s))) for s in range(t, last + 1)]
        self._batch = batch([c for _, c in self._sent], False)
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
