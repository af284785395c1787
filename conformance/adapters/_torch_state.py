"""Every numeric entry of a torch optimizer's state, with a path, a reader and a writer.

Walked (for ``state_discovery``): ``optimizer.state[p]`` for the port's own parameters, the
param groups (all keys but ``params``), the optimizer's attributes, closures of the functions it
holds, and what these contain (dicts, lists, tuples, objects), to a bounded depth; then
``optimizer.state[x]`` for every key x that is not a parameter (DeepSpeed-style state keyed by a
flat gradient buffer), its path part ``("keyed", where)`` naming x by where the walk found it
(``(("group", 0), ("key", "flat_grad"))``), else by its place among such keys (``(("order",
k),)``): a name that means the same on another instance of the port, as an ``id`` would not. A leaf is a
tensor, a NumPy array or a Python number; tensors are written in place (so a tensor inside a
tuple or a closure is writable), numbers through their container (a tuple holds none writable).
torch is imported by the caller's adapter; this module only touches the objects it is given.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .state_discovery import Leaf, Path, View, path_text
from .state_views import Mismatch

_MAX_DEPTH = 6
_SKIP_ATTRS = frozenset({"state", "param_groups", "defaults"})


@dataclass
class Slot:
    """A leaf's live location: read the value, write a new one (None when not writable)."""

    get: Callable[[], Any]
    put: Callable[[Any], None] | None


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach") and hasattr(x, "copy_")


def _numeric(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, (int, float)):
        return True
    if isinstance(x, np.ndarray):
        return bool(np.issubdtype(x.dtype, np.number))
    if _is_tensor(x):
        import torch

        return bool(x.dtype != torch.bool and not x.dtype.is_complex)
    return False


def _to_numpy(x: Any) -> np.ndarray:
    """A float64 copy (``.numpy()`` of a float64 CPU tensor shares its memory)."""
    if _is_tensor(x):
        return np.array(x.detach().to("cpu").double().numpy(), dtype=np.float64, copy=True)
    return np.array(x, dtype=np.float64, copy=True)


def _dtype(x: Any) -> str:
    if _is_tensor(x):
        return str(x.dtype).replace("torch.", "")
    return type(x).__name__ if not isinstance(x, np.ndarray) else str(x.dtype)


def _container_put(container: Any, key: Any, kind: str) -> Callable[[Any], None] | None:
    old = container[key] if kind != "attr" else getattr(container, key)
    if _is_tensor(old) or isinstance(old, np.ndarray):
        return None  # written in place by the caller
    if isinstance(container, tuple):
        return None
    cast = type(old)

    def put(value: Any) -> None:
        v = cast(float(np.ravel(np.asarray(value))[0]))
        if kind == "attr":
            setattr(container, key, v)
        else:
            container[key] = v

    return put


def _in_place(x: Any) -> Callable[[Any], None]:
    def put(value: Any) -> None:
        arr = np.asarray(value, dtype=np.float64)
        if _is_tensor(x):
            import torch

            src = torch.as_tensor(arr, dtype=torch.float64).to(device=x.device, dtype=x.dtype)
            x.copy_(src.reshape(x.shape))
        else:
            x[...] = arr.reshape(x.shape).astype(x.dtype)

    return put


def _cell_put(cell: Any) -> Callable[[Any], None] | None:
    old = cell.cell_contents
    if _is_tensor(old) or isinstance(old, np.ndarray):
        return None
    cast = type(old)

    def put(value: Any) -> None:
        cell.cell_contents = cast(float(np.ravel(np.asarray(value))[0]))

    return put


def _constant(value: Any) -> Callable[[], Any]:
    def get() -> Any:
        return value

    return get


class _Walker:
    def __init__(self, params: Sequence[Any], exclude: Sequence[Any]) -> None:
        self.out: dict[Path, Slot] = {}
        self._seen: set[int] = {id(x) for x in (*params, *exclude)}
        self._param_of = {id(p): i for i, p in enumerate(params)}
        self.where: dict[int, Path] = {}  # a tensor leaf's path, by id (naming a state key)

    def _key(self, k: Any) -> tuple[str, Any] | None:
        """A mapping key as a path part: a parameter (or its ``id``) by its index, so that the
        path means the same on another instance of the port; other hashables as they are."""
        if isinstance(k, int) and not isinstance(k, bool) and k in self._param_of:
            return ("param", self._param_of[k])
        if id(k) in self._param_of:
            return ("param", self._param_of[id(k)])
        if isinstance(k, (str, int)) and not isinstance(k, bool):
            return ("key", k)
        return None

    def leaf(self, path: Path, value: Any, put: Callable[[Any], None] | None) -> None:
        if _is_tensor(value) or isinstance(value, np.ndarray):
            put = _in_place(value)
            self.where.setdefault(id(value), path)
        self.out[path] = Slot(_constant(value), put)

    def walk(self, path: Path, x: Any, put: Callable[[Any], None] | None, depth: int) -> None:
        if id(x) in self._seen or depth > _MAX_DEPTH:
            return
        if _numeric(x):
            if _is_tensor(x) or isinstance(x, np.ndarray):
                self._seen.add(id(x))
            self.leaf(path, x, put)
            return
        if isinstance(x, (str, bytes, bool, type(None), types.ModuleType, type)):
            return
        self._seen.add(id(x))
        if isinstance(x, dict):
            for k, v in list(x.items()):
                part = self._key(k)
                if part is not None:
                    self.walk((*path, part), v, _safe_put(x, k, "key"), depth + 1)
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                self.walk((*path, ("idx", i)), v, _safe_put(x, i, "idx"), depth + 1)
        elif isinstance(x, (types.FunctionType, types.MethodType)):
            fn = x.__func__ if isinstance(x, types.MethodType) else x
            names = fn.__code__.co_freevars
            for name, cell in zip(names, fn.__closure__ or (), strict=False):
                try:
                    content = cell.cell_contents
                except ValueError:  # an empty cell
                    continue
                self.walk((*path, ("cell", name)), content, _cell_put(cell), depth + 1)
        elif hasattr(x, "__dict__") and not _is_tensor(x):
            for k, v in list(vars(x).items()):
                self.walk((*path, ("attr", k)), v, _safe_put(x, k, "attr"), depth + 1)


def _safe_put(container: Any, key: Any, kind: str) -> Callable[[Any], None] | None:
    try:
        return _container_put(container, key, kind)
    except Exception:  # an object whose attribute cannot be read back
        return None


def slots(opt: Any, params: Sequence[Any], exclude: Sequence[Any] = ()) -> dict[Path, Slot]:
    """Every numeric entry of ``opt``'s state reachable from the optimizer, by path."""
    w = _Walker(params, exclude)
    for i, p in enumerate(params):
        st = opt.state.get(p) if hasattr(opt.state, "get") else None
        if st:
            w.walk((("state", i),), st, None, 1)
    for gi, group in enumerate(opt.param_groups):
        for k, v in group.items():
            if k != "params":
                w.walk((("group", gi), ("key", k)), v, _safe_put(group, k, "key"), 2)
    for name, v in list(vars(opt).items()):
        if name in _SKIP_ATTRS or "hook" in name:
            continue
        w.walk((("attr", name),), v, _safe_put(opt, name, "attr"), 1)
    mine = {id(x) for x in (*params, *exclude)}
    keys = list(opt.state.keys()) if hasattr(opt.state, "keys") else []
    others = [k for k in keys if id(k) not in mine and not isinstance(k, (str, int))]
    for k, key in enumerate(others):
        where = w.where.get(id(key), (("order", k),))
        w.walk((("keyed", where),), opt.state[key], None, 1)
    return w.out


def leaves(
    found: dict[Path, Slot], convert: Callable[[Any], Any] | None = None
) -> dict[Path, Leaf]:
    """The values of the slots as ``state_discovery`` leaves (``convert``: applied to each value
    first, e.g. a DTensor to its full tensor or its shard)."""
    out = {}
    for path, slot in found.items():
        x = slot.get() if convert is None else convert(slot.get())
        value = _to_numpy(x)
        out[path] = Leaf(path, value, _dtype(x), value.size == 1 and value.ndim <= 1)
    return out


def write(found: dict[Path, Slot], view: View, values: np.ndarray) -> None:
    """Write flat float64 ``values`` into a view of a leaf (raises KeyError when it is gone,
    ``Mismatch``, a KeyError, when it holds another number of values)."""
    x = found[view.path].get()
    target = x[view.sub] if view.sub is not None else x
    if _is_tensor(target) or isinstance(target, np.ndarray):
        if int(np.prod(np.shape(target))) != values.size:  # the probe's layout does not fit
            raise Mismatch(
                f"{path_text(view.path)} holds {int(np.prod(np.shape(target)))} values where the "
                f"layout found on the probe writes {values.size}"
            )
        _in_place(target)(values.reshape(np.shape(target)))
        return
    put = found[view.path].put
    if put is None:
        raise NotImplementedError(f"{path_text(view.path)} cannot be written")
    put(values)


def write_number(found: dict[Path, Slot], path: Path, value: float) -> None:
    """Write a counter's value (a tensor in place, a number through its container)."""
    if path not in found:
        raise NotImplementedError(f"{path_text(path)} is gone after the optimizer's first step")
    x = found[path].get()
    if _is_tensor(x) or isinstance(x, np.ndarray):
        _in_place(x)(np.full(np.shape(x), float(value)))
        return
    put = found[path].put
    if put is None:
        raise NotImplementedError(f"{path_text(path)} cannot be written")
    put(value)
