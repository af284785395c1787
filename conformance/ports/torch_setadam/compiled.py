r"""The compiled CPU SET-Adam step: the kernels of :mod:`.compiled_kernels` through
``torch.compile`` (inductor's C++/OpenMP code), two calls per chunk of ``CHUNK`` tensors. It records
no stages.

A step of a param group:

1. the tensors with entries are sorted by (parameter dtype, state dtype) and layer, and cut into
   chunks of ``CHUNK`` tensor slots; the free slots of a chunk are two-element dummies, so every
   chunk of a dtype pair has the same signature and one pair of graphs serves every model;
2. per chunk, :func:`~.compiled_kernels.moments` updates $m$ and $v$ and returns the partial
   sums; as soon as every layer of a chunk is complete (at once, with one layer per tensor),
   :func:`~.compiled_scalars.layer_scalars` gives the per-tensor scalars on the host and
   :func:`~.compiled_kernels.update` moves the chunk's parameters while its $m$ and $v$ are
   recent.

``torch.compile(..., dynamic=True)`` makes the tensor sizes symbolic, and the first call of each
signature traces with duck shaping off and size-oblivious sizes, so that neither equal sizes nor
sizes 0 and 1 become guards. The learning rate, step counts, betas, eps, tau and weight decay are
float64 tables, so changing them (an LR scheduler, a tensor ``lr``) never recompiles: a graph is
traced once per (chunk size, dtype pair, ``l2``). The step-dependent scalars are host floats from
:class:`~conformance.ports.torch_setadam.hyper.Hyper`, as on the other paths.

The kernels keep no per-coordinate intermediates, so ``RECORDS_STAGES = False``: the harness
judges this path on parameters and state alone and never diagnoses it from a shadow run. The
state layout is the for-loop path's (``step`` a float32 0-d CPU tensor, ``exp_avg`` and
``exp_avg_sq`` in the parameter's dtype), so state dicts move between the paths. CPU tensors only:
a CUDA tensor raises ``RuntimeError`` (use ``fused=True`` or ``foreach=True`` there).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import compiled_kernels as K
from .compiled_scalars import layer_scalars
from .group import GroupTensors
from .hyper import Hyper
from .stages import Stages

RECORDS_STAGES = False

CHUNK = 8
"""Tensor slots per compiled call (fewer calls per step against a larger graph to compile)."""
RECOMPILE_LIMIT = 64
"""Graphs a kernel may hold while a new signature traces (torch's default of 8 would send the
ninth dtype pattern of a process to eager execution without a word)."""

DtypeKey = tuple[torch.dtype, torch.dtype]


@dataclass(frozen=True)
class Scalars:
    """Host inputs of :func:`.compiled_scalars.layer_scalars` for a set of rows (positions in
    the plan's ``live`` order)."""

    rows: np.ndarray
    layer: np.ndarray  # dense layer ids of the rows
    numel: np.ndarray  # float64 size of each of those layers
    wide: np.ndarray
    single: np.ndarray


@dataclass(frozen=True)
class Plan:
    """The chunks of a group, in call order, and when each can be updated."""

    live: tuple[int, ...]  # group tensor indices with entries, in chunk order
    chunks: tuple[tuple[DtypeKey, tuple[int, ...]], ...]  # (dtypes, positions in ``live``)
    ready: tuple[tuple[int, ...], ...]  # chunks whose update follows chunk k's moments
    scalars: tuple[Scalars | None, ...]  # per chunk k, the rows whose scalars are due after it


_PLANS: OrderedDict[tuple[object, ...], Plan] = OrderedDict()
_PLAN_CACHE_SIZE = 32


def make_plan(numels: Sequence[int], layer_of: Sequence[int], keys: Sequence[DtypeKey]) -> Plan:
    """The plan of a group of tensors (cached per sizes, layering and dtypes)."""
    cache_key = (tuple(numels), tuple(layer_of), tuple(keys), CHUNK)
    hit = _PLANS.get(cache_key)
    if hit is not None:
        _PLANS.move_to_end(cache_key)
        return hit
    first_key = {k: j for j, k in reversed(list(enumerate(keys)))}
    first_layer = {lay: j for j, lay in reversed(list(enumerate(layer_of)))}
    live = sorted(
        (i for i, k in enumerate(numels) if k > 0),
        key=lambda i: (first_key[keys[i]], first_layer[layer_of[i]], i),
    )
    chunks: list[tuple[DtypeKey, tuple[int, ...]]] = []
    for at, i in enumerate(live):
        if chunks and chunks[-1][0] == keys[i] and len(chunks[-1][1]) < CHUNK:
            chunks[-1] = (keys[i], (*chunks[-1][1], at))
        else:
            chunks.append((keys[i], (at,)))
    dense: dict[int, int] = {}
    lay = np.array([dense.setdefault(layer_of[i], len(dense)) for i in live], dtype=np.int64)
    size = np.zeros(len(dense))
    np.add.at(size, lay, np.array([float(numels[i]) for i in live]))
    last = np.zeros(len(dense), dtype=np.int64)
    for k, (_, pos) in enumerate(chunks):
        last[lay[list(pos)]] = k
    due = [max(int(last[lay[p]]) for p in pos) for _, pos in chunks]
    ready = tuple(tuple(j for j in range(len(chunks)) if due[j] == k) for k in range(len(chunks)))
    scalars: list[Scalars | None] = []
    for k in range(len(chunks)):
        # every row of every layer that the chunks updated after chunk k touch
        due_layers = {int(lay[p]) for j in ready[k] for p in chunks[j][1]}
        rows = [p for p in range(len(live)) if int(lay[p]) in due_layers]
        if not rows:
            scalars.append(None)
            continue
        r = np.array(rows, dtype=np.int64)
        sub: dict[int, int] = {}
        sub_lay = np.array([sub.setdefault(int(x), len(sub)) for x in lay[r]], dtype=np.int64)
        sub_size = np.array([size[x] for x in sub], dtype=np.float64)
        wide = np.array([keys[live[p]][1] == torch.float64 for p in rows])
        single = np.array([keys[live[p]][0] != torch.float64 for p in rows])
        scalars.append(Scalars(r, sub_lay, sub_size, wide, single))
    out = Plan(tuple(live), tuple(chunks), ready, tuple(scalars))
    _PLANS[cache_key] = out
    while len(_PLANS) > _PLAN_CACHE_SIZE:
        _PLANS.popitem(last=False)
    return out


_DUMMIES: dict[DtypeKey, list[tuple[Tensor, Tensor, Tensor, Tensor]]] = {}


def _dummies(key: DtypeKey, n: int) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
    """``n`` padding slots of dtypes ``key``: distinct zero tensors (aliased inputs would be a
    guard of their own). Their moments stay zero and their parameter does not move."""
    have = _DUMMIES.setdefault(key, [])
    pdt, sdt = key
    while len(have) < n:
        have.append(
            (torch.zeros(2, dtype=pdt), torch.zeros(2, dtype=pdt), torch.zeros(2, dtype=sdt),
             torch.zeros(2, dtype=sdt))
        )  # fmt: skip
    return have[:n]


def _dense_strides(t: Tensor) -> bool:
    """Whether ``t`` covers ``numel`` consecutive elements of its storage (a permuted layout such
    as a transposed leaf or ``channels_last``), so that a 1-D view walks it in memory order."""
    expect = 1
    for s, n in sorted((s, n) for s, n in zip(t.stride(), t.shape) if n != 1):
        if s != expect:
            return False
        expect *= n
    return True


def _flat(
    p: Tensor, g: Tensor, m: Tensor, v: Tensor
) -> tuple[list[Tensor], list[tuple[Tensor, Tensor]]]:
    """1-D aliases of ``p, g, m, v`` in one memory order, and the (original, stand-in) pairs to
    copy back after the step where a tensor had to be replaced by a copy in that order.

    Each alias is ``view(...).detach()``: it shares storage and version counter with the tensor
    but is not a view, so the graphs guard on it alone (a view's base is a guard of its own, and
    a view of a parameter requires grad even under no_grad)."""
    if p.is_contiguous() and g.is_contiguous() and m.is_contiguous() and v.is_contiguous():
        return [
            p.view(-1).detach(),
            g.view(-1).detach(),
            m.view(-1).detach(),
            v.view(-1).detach(),
        ], []
    n = p.numel()
    ref = p.stride() if _dense_strides(p) else None
    out: list[Tensor] = []
    back: list[tuple[Tensor, Tensor]] = []
    for j, t in enumerate((p, g, m, v)):
        if ref is not None and t.stride() == ref:
            out.append(t.as_strided((n,), (1,), t.storage_offset()).detach())
        elif ref is None and t.is_contiguous():
            out.append(t.view(-1).detach())
        else:
            like = (
                torch.empty_like(p, dtype=t.dtype)
                if ref is not None
                else torch.empty(p.shape, dtype=t.dtype)
            )
            like.copy_(t)
            out.append(like.as_strided((n,), (1,), like.storage_offset()).detach())
            if j != 1:  # the gradient is only read
                back.append((t, like))
    return out, back


_COMPILED: dict[str, Callable[..., Any]] = {}


def compiled(name: str) -> Callable[..., Any]:
    """``torch.compile(<kernel>, dynamic=True, fullgraph=True)`` of ``moments`` or ``update``,
    created on first use (importing this module does not import dynamo)."""
    fn = _COMPILED.get(name)
    if fn is None:
        fn = torch.compile(getattr(K, name), dynamic=True, fullgraph=True)
        _COMPILED[name] = fn
    return fn


@contextlib.contextmanager
def tracing_config() -> Iterator[None]:
    """The settings under which a new signature traces: sizes neither duck-shaped nor
    0/1-specialised, room for ``RECOMPILE_LIMIT`` graphs, and an error instead of a silent eager
    fallback when that is exceeded."""
    import torch._dynamo.config as dynamo_config
    import torch.fx.experimental._config as fx_config

    limit = max(int(dynamo_config.recompile_limit), RECOMPILE_LIMIT)
    patch_fx: Any = fx_config.patch  # type: ignore[attr-defined]
    patch_dynamo: Any = dynamo_config.patch
    with (
        patch_fx(use_duck_shape=False, backed_size_oblivious=True),
        patch_dynamo(recompile_limit=limit, fail_on_recompile_limit_hit=True),
    ):
        yield


_TRACED: set[tuple[object, ...]] = set()


def _call(name: str, signature: tuple[object, ...], *args: Any) -> Any:
    """Call kernel ``name``; a signature's first call traces under :func:`tracing_config` and
    turns a compiler failure into RuntimeError."""
    fn = compiled(name)
    key = (name, CHUNK, *signature)
    if key in _TRACED:
        return fn(*args)
    try:
        with tracing_config():
            out = fn(*args)
    except Exception as exc:  # torch's compiler errors share no public base class
        raise RuntimeError(
            f"SETAdam(compiled=True): torch.compile of {name} failed ({type(exc).__name__}: "
            f"{exc}); the for-loop path (compiled=False) needs no compiler"
        ) from exc
    _TRACED.add(key)
    return out


def moments_partials(
    key: DtypeKey, l2: bool, cols: Sequence[Sequence[Tensor]], gsc: Tensor
) -> np.ndarray:
    """Run :func:`~.compiled_kernels.moments` on one chunk (``cols`` = params, grads, m, v) with
    the group scalars ``gsc`` (one row per slot, or one row given to every slot); the partials,
    one row per slot."""
    n = len(cols[0])
    out = _call("moments", (key, l2), *cols, gsc if gsc.dim() == 2 else gsc.repeat(n, 1), l2)
    return torch.stack(out).view(n, -1).numpy()


def _require_cpu(tensors: Sequence[Tensor]) -> None:
    # two attribute reads per tensor first (``t.device`` builds an object: ~1.5 us a tensor)
    if all([t.is_cpu and not t.is_sparse for t in tensors]):
        return
    for t in tensors:
        if t.device.type != "cpu":
            raise RuntimeError(
                f"SETAdam(compiled=True) is a CPU path; got a {t.dtype} tensor on {t.device} "
                "(use fused=True or foreach=True on CUDA)"
            )
        if t.is_sparse:
            raise RuntimeError("SETAdam does not support sparse gradients; use dense gradients")


def step(g: GroupTensors, layer_of: list[int], hyper: Hyper, *, record: bool) -> Stages | None:
    """One step over the tensors of a group, in place. Returns None: nothing is recorded, whatever
    ``record`` says."""
    del record  # the kernels keep no per-coordinate stages
    # grad mode is a guard of the graphs too; ``setadam(...)`` may be called with grad enabled
    with torch.no_grad():
        _step(g, layer_of, hyper)
    return None


def _step(g: GroupTensors, layer_of: list[int], hyper: Hyper) -> None:
    params, grads, exp_avgs, exp_avg_sqs, state_steps = g
    if not params:
        return
    _require_cpu([*params, *grads])
    torch._foreach_add_(state_steps, 1)
    keys = [(p.dtype, m.dtype) for p, m in zip(params, exp_avgs)]
    plan = make_plan([p.numel() for p in params], layer_of, keys)
    if not plan.live:
        return
    steps = torch.stack([state_steps[i] for i in plan.live]).tolist()
    # float(): a tensor lr set on the group after construction gives tensor scalars
    per_t = {t: (float(hyper.step_size(t)), float(hyper.bias2(t))) for t in set(steps)}
    size = np.array([per_t[t][0] for t in steps])
    bias2 = np.array([per_t[t][1] for t in steps])
    b1, b2 = float(hyper.beta1), float(hyper.beta2)
    # one row per slot, built once a step (a torch op per chunk cost ~0.1-0.7 ms each)
    gsc = torch.from_numpy(
        np.tile(
            [1.0 - b1, b2, 1.0 - b2, -1.0 if hyper.maximize else 1.0, float(hyper.weight_decay)],
            (CHUNK, 1),
        )
    )
    decay = float(hyper.decay_factor()) if hyper.decays_params else 1.0
    parts = np.zeros((len(plan.live), 8))
    scal = np.zeros((len(plan.live), 2))  # SCALE, SHIFT per live tensor
    flats: list[list[list[Tensor]]] = []
    back: list[tuple[Tensor, Tensor]] = []
    for k, (key, pos) in enumerate(plan.chunks):
        cols: list[list[Tensor]] = [[], [], [], []]
        for p in pos:
            i = plan.live[p]
            flat, wb = _flat(params[i], grads[i], exp_avgs[i], exp_avg_sqs[i])
            for col, t in zip(cols, flat):
                col.append(t)
            back += wb
        for dummy in _dummies(key, CHUNK - len(pos)):
            for col, t in zip(cols, dummy):
                col.append(t)
        flats.append(cols)
        got = moments_partials(key, hyper.l2, cols, gsc)
        parts[list(pos), : got.shape[1]] = got[: len(pos)]
        sub = plan.scalars[k]
        if sub is not None:
            _, a, shift = layer_scalars(
                parts[sub.rows], sub.wide, sub.single, sub.layer, sub.numel, bias2[sub.rows],
                eps=hyper.eps, tau=hyper.tau,
            )  # fmt: skip
            scal[sub.rows, 0] = a
            scal[sub.rows, 1] = shift
        for j in plan.ready[k]:
            jkey, jpos = plan.chunks[j]
            table = np.zeros((CHUNK, K.UPDATE_SCALARS))
            table[:, K.SCALE] = 1.0
            table[:, K.DECAY] = 1.0
            table[:, K.EPS] = hyper.eps
            r = list(jpos)
            table[: len(r), K.SCALE] = scal[r, 0]
            table[: len(r), K.SHIFT] = scal[r, 1]
            table[: len(r), K.STEP_SIZE] = size[r]
            table[: len(r), K.DECAY] = decay
            ps, _, ms, vs = flats[j]
            _call("update", (jkey,), ps, ms, vs, torch.from_numpy(table))
    for orig, stand_in in back:
        orig.copy_(stand_in)
