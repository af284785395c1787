"""The optimizer state record, its initialisation, and its exact save/load.

$m$ and $v$ are kept unscaled (SET-Adam's down-scaling acts on a copy each step). ``vmax`` exists
only for amsgrad: in the torch convention it is the running maximum of raw $v$, in the optax
convention that of the bias-corrected $\\hat v$ (see ``AdamConfig.amsgrad_mode``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from .arrays import F64Array, as_float64_tuple
from .config import AdamConfig, Config

STATE_SCHEMA_VERSION = 1


class State(NamedTuple):
    """Immutable optimizer state: the number of steps taken and the moment arrays (float64)."""

    step: int
    m: tuple[F64Array, ...]
    v: tuple[F64Array, ...]
    vmax: tuple[F64Array, ...] | None = None


def _frozen_zeros(shape: tuple[int, ...]) -> F64Array:
    z = np.zeros(shape, dtype=np.float64)
    z.flags.writeable = False
    return z


def init(params: Sequence[np.ndarray], config: Config) -> State:
    """State before the first step: $t = 0$, $m_0 = v_0 = 0$ (and $v^{\\max}_0 = 0$ for amsgrad)."""
    arrays = as_float64_tuple(params, "params")
    m = tuple(_frozen_zeros(p.shape) for p in arrays)
    v = tuple(_frozen_zeros(p.shape) for p in arrays)
    vmax = None
    if isinstance(config, AdamConfig) and config.amsgrad:
        vmax = tuple(_frozen_zeros(p.shape) for p in arrays)
    return State(step=0, m=m, v=v, vmax=vmax)


def save_state(path: str | os.PathLike[str], state: State) -> None:
    """Write ``state`` to an ``.npz`` file; ``load_state`` gives it back bit for bit."""
    payload: dict[str, np.ndarray] = {
        "schema_version": np.array(STATE_SCHEMA_VERSION, dtype=np.int64),
        "step": np.array(state.step, dtype=np.int64),
        "n_arrays": np.array(len(state.m), dtype=np.int64),
        "has_vmax": np.array(state.vmax is not None),
    }
    for i, (m, v) in enumerate(zip(state.m, state.v, strict=False)):
        payload[f"m_{i}"] = np.asarray(m, dtype=np.float64)
        payload[f"v_{i}"] = np.asarray(v, dtype=np.float64)
        if state.vmax is not None:
            payload[f"vmax_{i}"] = np.asarray(state.vmax[i], dtype=np.float64)
    with open(path, "wb") as fh:
        np.savez(fh, **payload)  # type: ignore[arg-type]


def load_state(path: str | os.PathLike[str]) -> State:
    """Read a state written by ``save_state``; raises ``ValueError`` on an unknown schema."""
    with np.load(path, allow_pickle=False) as data:
        version = int(data["schema_version"])
        if version != STATE_SCHEMA_VERSION:
            raise ValueError(
                f"{os.fspath(path)!r}: state schema version {version}, this reference reads "
                f"version {STATE_SCHEMA_VERSION}"
            )
        n = int(data["n_arrays"])

        def arr(key: str) -> F64Array:
            a = np.array(data[key], dtype=np.float64)
            a.flags.writeable = False
            return a

        m = tuple(arr(f"m_{i}") for i in range(n))
        v = tuple(arr(f"v_{i}") for i in range(n))
        vmax = tuple(arr(f"vmax_{i}") for i in range(n)) if bool(data["has_vmax"]) else None
        return State(step=int(data["step"]), m=m, v=v, vmax=vmax)
