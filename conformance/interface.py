"""The one port interface the harness drives (shape fixed by the shared contract).

A *port* is any implementation of Adam or SET-Adam wrapped so that the harness can drive it step by
step: (re)initialise from float64 parameters (optionally continuing from a reference state), feed
gradients, read back parameters and, where the implementation exposes them, its m/v state and the
stage intermediates of the last step. Adapters in :mod:`conformance.adapters` turn torch.optim,
optax, our own ports and third-party code into this interface.

Optional extras a port may provide (looked up with ``getattr``; none is required):

``state_dtype: str``
    dtype the port keeps m and v in, when it differs from ``dtype`` (e.g. bfloat16 parameters with
    float32 state). The harness rounds re-synced state inputs to it.
``side_effects() -> list[str]``
    side effects the adapter observed during the last step (gradients mutated in place, parameters
    of another param group touched, ...); each entry is a one-line description.
``close() -> None``
    release resources once the harness is done with the port.
``configure(contract: conformance.contract.Contract) -> None``
    take a contract scenario's param groups (each with its own config), lr schedule and
    parameters without gradient, after construction and before the first ``reset``; ``step()``
    then receives ``None`` for an array without gradient at that step. Raise
    ``NotImplementedError`` (with the reason) for what the port cannot express: the scenario is
    skipped with that reason, as it is for a port without ``configure``. The torch adapter
    decides by a probe step (param groups, a 0-d tensor lr): a refusal or a step without
    effect is such a reason; a step that moves the parameters, right or wrong, is judged.
``resume() -> None``
    checkpoint round trip (the ``resume`` family, ``Scenario.resume_after``): serialise the
    optimizer's state as users checkpoint it (torch: ``state_dict()`` through ``torch.save`` /
    ``torch.load``; JAX: the state pytree's leaves through NumPy), build a *fresh* optimizer
    over fresh parameters holding the current values, load the state into it and continue with
    that one. Raises ``NotImplementedError`` with the reason when the port cannot be
    checkpointed (no ``state_dict``, the load fails): the scenario is skipped with it.
``lay_out(layouts: Sequence[str]) -> None``
    the memory layout of each parameter from the next ``reset`` on (the ``layouts`` family,
    ``Scenario.layouts``), one of ``LAYOUTS``: ``"contiguous"`` (as always), ``"transposed"``
    (a 2-D parameter made as the transpose of a contiguous tensor of the reversed shape: a
    non-contiguous leaf) and ``"channels_last"`` (a 4-D parameter in ``torch.channels_last``);
    gradients are given in their parameter's layout. Raises ``NotImplementedError`` with the
    reason where a layout means nothing (JAX: XLA owns the layout of its arrays).
``compile_step() -> None``
    from the next ``reset`` on, step through the compiled step users write (the ``compiled``
    family, ``Scenario.compiled``; torch: ``step = torch.compile(opt.step)``, called instead of
    ``opt.step``). Raises ``NotImplementedError`` with the reason where there is nothing more to
    compile (JAX ports run every step under ``jax.jit`` already).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - typing only
    import setadam_ref

DTYPES: tuple[str, ...] = ("float64", "float32", "bfloat16", "float16")
DEVICES: tuple[str, ...] = ("cpu", "cuda")
LAYOUTS: tuple[str, ...] = ("contiguous", "transposed", "channels_last")


class PortState(NamedTuple):
    """The moments of a port after its last step, as float64 copies (``None`` when hidden)."""

    step: int
    m: tuple[np.ndarray, ...] | None
    v: tuple[np.ndarray, ...] | None


@runtime_checkable
class Port(Protocol):
    """An Adam or SET-Adam implementation, driven step by step by the harness."""

    name: str
    dtype: str  # "float64" | "float32" | "bfloat16" | "float16"
    device: str  # "cpu" | "cuda"

    def reset(self, params: Sequence[np.ndarray], state: setadam_ref.State | None = None) -> None:
        """(Re)initialise from float64 params cast to the port's dtype/device.

        With a state, continue from it (step counter, m, v, vmax): used for the per-step re-synced
        comparison. A port that cannot continue from a given state raises ``NotImplementedError``;
        the harness then compares it free-running only.
        """
        ...

    def step(self, grads: Sequence[np.ndarray]) -> None:
        """Take one optimizer step with these gradients (float64 arrays, cast by the port)."""
        ...

    def params(self) -> tuple[np.ndarray, ...]:
        """Current parameters as float64 numpy copies."""
        ...

    def state(self) -> PortState | None:
        """Current m/v state as float64 copies, or ``None`` when the port hides its state."""
        ...

    def stages(self) -> dict[str, tuple[np.ndarray, ...]] | None:
        """Stage intermediates of the last step, keyed by ``setadam_ref.STAGES`` names.

        ``"down_scaling"`` = v_scaled, ``"epsilon_embedding"`` = w, ``"down_translating"`` =
        w_translated, ``"update"`` = theta_t - theta_{t-1}; plus ``"cos2"``: per-array 0-d arrays
        holding the array's layer's c. ``None`` when the port cannot expose them.
        """
        ...
