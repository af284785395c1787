r"""The numba CPU SET-Adam step (``SETAdam(compiled="numba")``): two passes of
:mod:`.numba_kernels` per dtype of a group, one call each, whatever the number of tensors. It
records no stages.

A step of a param group:

1. the tensors with entries are split by dtype (float32 or float64 parameters with state of the
   same dtype; a group holding any other dtype runs the ``torch.compile`` path of
   :mod:`.compiled` instead, since numba has no bfloat16), and each tensor gives 1-D dense
   aliases of $\theta, g, m, v$ in one memory order (:func:`.compiled._flat`: a transposed or
   ``channels_last`` leaf walks its memory in place, a mixed layout through copies);
2. :func:`~.numba_kernels.stats` computes every new $v$ and returns per-block partials of it,
   combined per tensor (exact min/max; float64 sums in a different order than the compiled
   path's, inside the same $\gamma_{d-1}$ bound), writing nothing; a float64 layer whose largest
   entry lies outside $[2^{-400}, 2^{400}]$ gets its $2^{\mp 600}$-scaled sums from one more
   read (:func:`~.numba_kernels.scaled_sums`; ordinary magnitudes never pay for it);
3. :func:`~.compiled_scalars.layer_scalars` gives $a$ and the shift of every tensor at once (all
   layers are complete after one call), on the host in float64 as on the compiled path;
4. :func:`~.numba_kernels.step` updates every $m$, $v$ and parameter in one pass (it computes the
   new $v$ again, bit for bit as the first pass did).

The first call of a dtype compiles the kernels (numba's on-disk cache, ``cache=True``, serves
later processes). The step counters advance in one call (:func:`~.numba_kernels.bump_steps`)
where they are float32 CPU tensors, as this path creates them. numba's thread count follows
``torch.get_num_threads()`` (capped by numba's own maximum), and its threading layer is
``workqueue`` unless ``NUMBA_THREADING_LAYER`` says otherwise (set before numba's first parallel
call of the process; its OpenMP layer slowed torch's own kernels down). The state layout is the
for-loop path's, so state dicts move between the paths. CPU tensors only. numba is an optional
dependency (the ``numba`` extra): without it this path raises
``RuntimeError`` naming the extra.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import ModuleType

import numpy as np
import torch
from torch import Tensor

from . import compiled as _compiled
from .compiled_scalars import layer_scalars, scaled_rows
from .eager_only import eager_only
from .group import GroupTensors
from .hyper import Hyper
from .stages import Stages

RECORDS_STAGES = False

_DTYPES = (torch.float32, torch.float64)
#: one kernel call's (rows, group scalars in its dtype, address table, aliases kept alive, blocks)
_Call = tuple[np.ndarray, np.ndarray, np.ndarray, list[Tensor], np.ndarray]


def kernels() -> ModuleType:
    """:mod:`.numba_kernels`, imported on first use (RuntimeError naming the extra without numba)."""
    try:
        import numba

        if "NUMBA_THREADING_LAYER" not in os.environ:
            # numba's OpenMP pool is a second OpenMP runtime beside torch's: after a numba step
            # torch's own kernels ran up to 10x slower (fused Adam, float64, 1 thread: 64 ms
            # before, 780 ms after); the workqueue pool left them at 63 ms
            numba.config.THREADING_LAYER = "workqueue"  # type: ignore[attr-defined]
        from . import numba_kernels
    except ImportError as exc:
        raise RuntimeError(
            'SETAdam(compiled="numba") needs numba (pip install setadam-ref[numba]); '
            f"it failed to import ({exc})"
        ) from exc
    return numba_kernels


def available() -> bool:
    """Whether numba imports here (the reason a test of this path skips when it does not)."""
    try:
        kernels()
    except RuntimeError:
        return False
    return True


# torch.compile of a caller (opt.step) runs this step eagerly: dynamo cannot trace numba
@eager_only
def step(g: GroupTensors, layer_of: list[int], hyper: Hyper, *, record: bool) -> Stages | None:
    """One step over the tensors of a group, in place. Returns None: nothing is recorded."""
    del record
    dts = [p.dtype for p in g.params]
    if not set(dts) <= set(_DTYPES) or any(
        [m.dtype != d or v.dtype != d for m, v, d in zip(g.exp_avgs, g.exp_avg_sqs, dts)]
    ):
        return _compiled.step(g, layer_of, hyper, record=False)
    K = kernels()
    with torch.no_grad():
        _step(K, g, layer_of, hyper)
    return None


def _addresses(
    g: GroupTensors, idx: Sequence[int]
) -> tuple[np.ndarray, list[Tensor], list[tuple[Tensor, Tensor]]]:
    """The ``(θ, g, m, v)`` address table of tensors ``idx``, the aliases it points into (kept
    alive through the call) and the (original, stand-in) pairs to copy back."""
    cols = [[c[i] for i in idx] for c in g[:4]]
    # one list comprehension per column: a Python loop over tensors costs ~10 us per tensor
    addr = np.array([[t.data_ptr() for t in c] for c in cols], dtype=np.int64).T.copy()
    keep: list[Tensor] = []
    back: list[tuple[Tensor, Tensor]] = []
    if all([t.is_contiguous() for c in cols for t in c]):
        return addr, keep, back
    dense = np.logical_and.reduce([[t.is_contiguous() for t in c] for c in cols])
    for row in np.flatnonzero(~dense):
        quad = [c[row] for c in cols]
        flat, wb = _compiled._flat(*quad)
        addr[row] = [t.data_ptr() for t in flat]
        keep += flat
        back += wb
    return addr, keep, back


def _step(K: ModuleType, g: GroupTensors, layer_of: list[int], hyper: Hyper) -> None:
    params, grads, _, _, state_steps = g
    if not params:
        return
    _compiled._require_cpu([*params, *grads])
    counts = _bump_steps(K, state_steps)
    numels = [p.numel() for p in params]
    live = [i for i, n in enumerate(numels) if n > 0]
    if not live:
        return
    import numba

    cap = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    numba.set_num_threads(min(torch.get_num_threads(), cap))
    steps = [counts[i] for i in live]
    per_t = {t: (float(hyper.step_size(t)), float(hyper.bias2(t))) for t in set(steps)}
    size = np.array([per_t[t][0] for t in steps])
    bias2 = np.array([per_t[t][1] for t in steps])
    dense: dict[int, int] = {}
    lay = np.array([dense.setdefault(layer_of[i], len(dense)) for i in live], dtype=np.int64)
    numel = np.array([numels[i] for i in live], dtype=np.int64)
    lay_size = np.zeros(len(dense))
    np.add.at(lay_size, lay, numel.astype(np.float64))
    wide = np.array([params[i].dtype == torch.float64 for i in live])
    parts = np.zeros((len(live), K.PARTIALS))
    group_sc = [
        1.0 - float(hyper.beta1),
        float(hyper.beta2),
        1.0 - float(hyper.beta2),
        -1.0 if hyper.maximize else 1.0,
        float(hyper.weight_decay),
    ]
    calls: list[_Call] = []
    back: list[tuple[Tensor, Tensor]] = []
    for is_wide in (False, True):
        rows = np.flatnonzero(wide == is_wide)
        if rows.size == 0:
            continue
        dt = np.float64 if is_wide else np.float32
        addr, keep, wb = _addresses(g, [live[r] for r in rows])
        back += wb
        blocks = K.make_blocks(numel[rows])
        out = np.empty((blocks.shape[0], K.PARTIALS))
        info = np.iinfo(np.int64 if is_wide else np.int32)
        ints = np.array([info.max, info.min], dtype=info.dtype)
        sc = np.array([*group_sc, 0.0]).astype(dt)
        sc[K.LERP_COMPLEMENT] = dt(1.0) - sc[K.ONE_MINUS_BETA1]  # rounded in dt, as torch's lerp
        # unscaled sums only: the scaled ones are taken below where a layer needs them
        K.stats(addr, blocks, sc, ints, hyper.l2, out)
        parts[rows] = K.combine_blocks(out, blocks, rows.size)
        calls.append((rows, sc, addr, keep, blocks))
    if wide.any():
        _scaled_sums(K, parts, wide, lay, len(dense), calls, hyper.l2)
    _, a, shift = layer_scalars(
        parts, wide, ~wide, lay, lay_size, bias2, eps=hyper.eps, tau=hyper.tau
    )
    decay = float(hyper.decay_factor()) if hyper.decays_params else 1.0
    for rows, sc, addr, keep, blocks in calls:
        table = np.empty((rows.size, 5))
        table[:, K.SCALE] = a[rows]
        table[:, K.SHIFT] = shift[rows]
        table[:, K.STEP_SIZE] = size[rows]
        table[:, K.DECAY] = decay
        table[:, K.EPS] = hyper.eps
        K.step(addr, blocks, sc, hyper.l2, table.astype(sc.dtype))
        del keep
    for orig, stand_in in back:
        orig.copy_(stand_in)


def _bump_steps(K: ModuleType, state_steps: list[Tensor]) -> list[float]:
    """Add one to every step counter, in place, and give the new counts. float32 CPU counters
    (the state this path creates) in one kernel call; any other, as ``torch._foreach_add_``."""
    if all([s.dtype == torch.float32 and s.is_cpu and s.numel() == 1 for s in state_steps]):
        addr = np.array([s.data_ptr() for s in state_steps], dtype=np.int64)
        out = np.empty(addr.shape[0], dtype=np.float32)
        K.bump_steps(addr, out)
        return [float(x) for x in out]
    torch._foreach_add_(state_steps, 1)
    return [float(s) for s in state_steps]


def _scaled_sums(
    K: ModuleType,
    parts: np.ndarray,
    wide: np.ndarray,
    lay: np.ndarray,
    n_layers: int,
    calls: list[_Call],
    l2: bool,
) -> None:
    """Fill the scaled-sum columns of ``parts`` for the float64 tensors whose layer takes scaled
    sums (:func:`~.compiled_scalars.scaled_rows`; a layer of ordinary magnitudes never does, so
    :func:`~.numba_kernels.stats` adds no scaled sums in the common case)."""
    with np.errstate(invalid="ignore"):  # a NaN entry: its layer is NaN whichever sums
        big, small = scaled_rows(parts, wide, lay, n_layers)
    need = wide & (big | small)
    if not need.any():
        return
    for rows, sc, addr, _, blocks in calls:
        pick = np.flatnonzero(need[rows])
        if pick.size == 0:
            continue
        sub = np.concatenate([blocks[blocks[:, 0] == r] for r in pick])
        out = np.empty((sub.shape[0], K.PARTIALS))
        K.scaled_sums(addr, sub, sc, l2, out)
        cols = [K.S1_DOWN, K.S2_DOWN, K.S1_UP, K.S2_UP]
        parts[rows[pick][:, None], cols] = K.combine_blocks(out, sub, pick.size)[:, cols]
