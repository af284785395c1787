"""The optimizer state record, its initialisation, and its exact save/load.

$m$ and $v$ are kept unscaled (SET-Adam's down-scaling acts on a copy each step). ``vmax`` exists
only for amsgrad: in the torch convention it is the running maximum of raw $v$, in the optax
convention that of the bias-corrected $\\hat v$ (see ``AdamConfig.amsgrad_mode``).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from typing import Any, NamedTuple

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


class StateFileError(ValueError):
    """A state file that ``load_state`` cannot read back, or a state ``save_state`` will not write;
    the message names the file and what is wrong."""


#: the largest step counter a state file holds (int64)
MAX_STEP = 2**63 - 1
_HEADER = ("schema_version", "step", "n_arrays", "has_vmax")


def _moment_problem(kind: str, i: int, a: np.ndarray) -> str | None:
    """Why ``a`` cannot be the moment array ``kind`` of array ``i`` of a state, or None."""
    if a.dtype != np.float64:
        return f"{kind} of array {i} has dtype {a.dtype}, a state holds float64"
    if not np.isfinite(a).all():
        what = "NaN" if np.isnan(a).any() else "an infinity"
        return f"state holds {what} in {kind} of array {i}"
    if kind in ("v", "vmax") and (a < 0).any():
        return f"state holds a negative value in {kind} of array {i} (a second moment is >= 0)"
    return None


def _state_problem(state: State, shapes: Sequence[tuple[int, ...]] | None) -> str | None:
    """Why ``state`` cannot be written to (or read back from) a state file, or None."""
    step = state.step
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)):
        return f"the step counter must be an integer, got {step!r}"
    if not 0 <= int(step) <= MAX_STEP:
        return f"the step counter must lie in 0..2**63 - 1, got {step}"
    if len(state.v) != len(state.m):
        return f"m has {len(state.m)} arrays but v has {len(state.v)}"
    if state.vmax is not None and len(state.vmax) != len(state.m):
        return f"m has {len(state.m)} arrays but vmax has {len(state.vmax)}"
    if shapes is not None and len(shapes) != len(state.m):
        return f"the state holds {len(state.m)} arrays, the parameters are {len(shapes)}"
    kinds = [("m", state.m), ("v", state.v)] + ([("vmax", state.vmax)] if state.vmax else [])
    for kind, arrays in kinds:
        for i, a in enumerate(arrays):
            a = np.asarray(a)
            if (problem := _moment_problem(kind, i, a)) is not None:
                return problem
            want = tuple(shapes[i]) if shapes is not None else np.shape(state.m[i])
            if a.shape != want:
                return f"{kind} of array {i} has shape {a.shape}, expected {want}"
    return None


def save_state(path: str | os.PathLike[str], state: State) -> None:
    """Write ``state`` to an ``.npz`` file; ``load_state`` gives it back bit for bit.

    Raises :class:`StateFileError` (before writing anything) for a state ``load_state`` would
    refuse: a step counter that is not an integer in 0..2**63 - 1, arrays of other dtypes or
    mismatched shapes, non-finite moments.
    """
    if (problem := _state_problem(state, None)) is not None:
        raise StateFileError(f"{os.fspath(path)!r}: will not write this state: {problem}")
    payload: dict[str, np.ndarray] = {
        "schema_version": np.array(STATE_SCHEMA_VERSION, dtype=np.int64),
        "step": np.array(int(state.step), dtype=np.int64),
        "n_arrays": np.array(len(state.m), dtype=np.int64),
        "has_vmax": np.array(state.vmax is not None),
    }
    for i, (m, v) in enumerate(zip(state.m, state.v, strict=True)):
        payload[f"m_{i}"] = np.asarray(m, dtype=np.float64)
        payload[f"v_{i}"] = np.asarray(v, dtype=np.float64)
        if state.vmax is not None:
            payload[f"vmax_{i}"] = np.asarray(state.vmax[i], dtype=np.float64)
    with open(path, "wb") as fh:
        np.savez(fh, **payload)  # type: ignore[arg-type]


def _integer(data: Any, key: str, where: str) -> int:
    a = data[key]
    if a.shape != () or a.dtype.kind not in "iu":
        raise StateFileError(f"{where}: {key} must be an integer scalar, got {a.dtype} {a.shape}")
    return int(a)


def _read(path: str | os.PathLike[str], config: Config | None, shapes: Any) -> State:
    where = repr(os.fspath(path))
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic[:2] != b"PK":
        raise StateFileError(f"{where}: not a state file: not a zip archive (.npz)")
    with np.load(path, allow_pickle=False) as data:
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise StateFileError(f"{where}: a single .npy array, not a state file (.npz)")
        keys = set(data.files)
        missing = [k for k in _HEADER if k not in keys]
        if missing:
            raise StateFileError(f"{where}: not a state file: no field {missing[0]!r}")
        version = _integer(data, "schema_version", where)
        if version != STATE_SCHEMA_VERSION:
            raise StateFileError(
                f"{where}: state schema version {version}, this reference reads "
                f"version {STATE_SCHEMA_VERSION}"
            )
        step = _integer(data, "step", where)
        if step < 0:
            raise StateFileError(f"{where}: the step counter is negative ({step})")
        n = _integer(data, "n_arrays", where)
        hv = data["has_vmax"]
        if hv.shape != () or hv.dtype != np.bool_:
            raise StateFileError(f"{where}: has_vmax must be a boolean scalar")
        has_vmax = bool(hv)
        want = set(_HEADER) | {f"{k}_{i}" for i in range(n) for k in ("m", "v")}
        if has_vmax:
            want |= {f"vmax_{i}" for i in range(n)}
        if keys - want:
            raise StateFileError(f"{where}: unexpected field {sorted(keys - want)[0]!r}")
        if want - keys:
            raise StateFileError(f"{where}: missing field {sorted(want - keys)[0]!r}")

        def arr(key: str) -> F64Array:
            a = np.array(data[key])
            a.flags.writeable = False
            return a

        m = tuple(arr(f"m_{i}") for i in range(n))
        v = tuple(arr(f"v_{i}") for i in range(n))
        vmax = tuple(arr(f"vmax_{i}") for i in range(n)) if has_vmax else None
    state = State(step=step, m=m, v=v, vmax=vmax)
    if config is not None:
        amsgrad = isinstance(config, AdamConfig) and config.amsgrad
        if amsgrad != has_vmax:
            held = "holds vmax" if has_vmax else "holds no vmax"
            raise StateFileError(
                f"{where}: the state {held} but the config {'uses' if amsgrad else 'does not use'} amsgrad"
            )
    sh = None if shapes is None else [tuple(int(d) for d in np.shape(p)) for p in shapes]
    if (problem := _state_problem(state, sh)) is not None:
        raise StateFileError(f"{where}: {problem}")
    return state


def load_state(
    path: str | os.PathLike[str],
    config: Config | None = None,
    params: Sequence[Any] | None = None,
) -> State:
    """Read a state written by ``save_state`` (bit for bit).

    Every problem raises :class:`StateFileError` naming what is wrong: not a state file (not a
    zip, truncated, a field missing or extra), an unknown schema version, a step counter that
    is not a non-negative integer, moments that are not finite float64 arrays, and, when given,
    ``config`` (vmax present exactly for amsgrad) or ``params`` (the arrays' shapes) not matching.
    """
    try:
        return _read(path, config, params)
    except StateFileError:
        raise
    except FileNotFoundError as exc:
        raise StateFileError(f"{os.fspath(path)!r}: no such file") from exc
    except (OSError, ValueError, EOFError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        raise StateFileError(
            f"{os.fspath(path)!r}: not a readable state file ({type(exc).__name__}: {exc})"
        ) from exc
