"""Torch SET-Adam ports with mistakes no default scenario shows, as outside implementers write them.

Each is the Dict-style outside port (``conformance.wrong_ports.outside_torch``) with hooks of
``outside_math`` replaced:

- ``TinyLayerTauSETAdam``: a "fast path" for one-element layers that skips the down-translating
  when tau > 0.8 (the author assumed w - tau * min w = (1 - tau) w underflows there);
- ``DecayChunkTailSETAdam``: the weight-decay code path (a second kernel the author wrote for
  AdamW-style training) reduces cos^2 of a layer in chunks of 4096 and drops the last, partial
  chunk: wrong only for a layer of more than 4096 coordinates *and* weight decay on. The fixed
  families reach each half alone (``big_layers`` has no weight decay, the weight-decay
  scenarios have layers of <= 48 coordinates), never both; a chunk-tail bug on every path is
  ``big_layers``'s to catch (``conformance.wrong_ports.outside_kernels``);
- ``LateBiasSETAdam``: the bias correction of v read from a table of 1000 precomputed
  steps, clamped: wrong only after step 1000, visibly so only when beta2 is near 1;
- ``GroupLrCacheSETAdam`` (found by the contract strategies only): the lr of every param group
  but the first read once, at construction: wrong only for an lr schedule over several groups.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from conformance.wrong_ports.outside_math import Frame, SetAdamMath
from conformance.wrong_ports.outside_math import cos2 as _cos2
from conformance.wrong_ports.outside_math import translate as _translate
from conformance.wrong_ports.outside_torch import PORTS

CHUNK = 4096
TABLE = 1000


def _translate_tiny(f: Frame, w: Tensor, w_min: Tensor) -> Tensor:
    if w.numel() == 1 and f.hp.tau > 0.8:
        return w  # "fast path": (1 - tau) w is tiny anyway
    return _translate(f, w, w_min)


def _cos2_chunked(f: Frame, v: Tensor, seg: tuple[int, int]) -> Tensor:
    n = v.numel()
    if n <= CHUNK or not f.hp.weight_decay:  # only the weight-decay kernel is chunked
        return _cos2(f, v, seg)
    full = (n // CHUNK) * CHUNK  # the tail chunk is forgotten
    return _cos2(f, v[:full], seg)


def _bias_table(f: Frame) -> tuple[float, float]:
    t = min(f.t, TABLE)
    return 1.0 - f.hp.b1**f.t, 1.0 - f.hp.b2**t


def _planted(name: str, hooks: dict[str, Any], doc: str) -> type:
    base = PORTS["DictSETAdam"]

    def __init__(self: Any, params: Any, *args: Any, **kw: Any) -> None:
        base.__init__(self, params, *args, **kw)
        self._math = SetAdamMath(hooks)

    return type(name, (base,), {"__init__": __init__, "__doc__": doc, "__module__": __name__})


TinyLayerTauSETAdam = _planted(
    "TinyLayerTauSETAdam", {"translate": _translate_tiny},
    "SET-Adam that skips the down-translating of one-element layers when tau > 0.8.",
)  # fmt: skip
DecayChunkTailSETAdam = _planted(
    "DecayChunkTailSETAdam", {"cos2": _cos2_chunked},
    "SET-Adam whose weight-decay path drops the partial last chunk of 4096 in its cos^2.",
)  # fmt: skip
LateBiasSETAdam = _planted(
    "LateBiasSETAdam", {"bias": _bias_table},
    "SET-Adam whose v bias correction is clamped to step 1000.",
)  # fmt: skip
CONTROL = PORTS["DictSETAdam"]


class GroupLrCacheSETAdam(CONTROL):  # type: ignore[misc, valid-type]
    """SET-Adam whose param groups after the first keep the lr they had at construction (its
    author's "fast path" for fine-tuning setups caches the extra groups' options; the first,
    main group is read live). Only an lr that changes while there are several groups shows
    it: ``schedules`` has one group, the ``groups`` scenarios a constant lr."""

    def __init__(self, params: Any, *args: Any, **kw: Any) -> None:
        super().__init__(params, *args, **kw)
        self._cached_lr = [g["lr"] for g in self.param_groups]

    def _hyper(self, group: dict[str, Any]) -> Any:
        hp = super()._hyper(group)
        k = next(i for i, g in enumerate(self.param_groups) if g is group)
        if 0 < k < len(self._cached_lr):
            hp.lr = self._cached_lr[k]
        return hp
