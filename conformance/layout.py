"""The one layer/offset helper: arrays flattened into one vector, with the layer of every entry.

Every stage of the harness (tolerance model, comparison, diagnosis, catalogue replays, vectors)
addresses coordinates through :class:`Flat`: array ``i`` occupies ``offsets[i]:offsets[i+1]`` of
the concatenation, and ``layer_id[k]`` is the layer of coordinate ``k``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

F = np.ndarray


@dataclass(frozen=True)
class Flat:
    """Flattening of a list of arrays into one vector, with the layer of every coordinate."""

    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]  # len(shapes) + 1 entries
    layer_of_array: tuple[int, ...]
    layer_id: np.ndarray  # layer index of every coordinate
    n_layers: int
    layer_size: np.ndarray  # coordinates per layer (float64)

    @staticmethod
    def make(shapes: Sequence[tuple[int, ...]], layers: Sequence[Sequence[int]] | None) -> Flat:
        shapes_t = tuple(tuple(int(d) for d in s) for s in shapes)
        sizes = [int(np.prod(s)) for s in shapes_t]
        offsets = tuple(int(x) for x in np.concatenate([[0], np.cumsum(sizes)]))
        lay = [(i,) for i in range(len(shapes_t))] if layers is None else layers
        loa = [0] * len(shapes_t)
        for k, arrays in enumerate(lay):
            for i in arrays:
                loa[i] = k
        layer_id = np.repeat(np.asarray(loa, dtype=np.int64), sizes)
        n_layers = len(lay)
        size = np.bincount(layer_id, minlength=n_layers).astype(np.float64)
        return Flat(shapes_t, offsets, tuple(loa), layer_id, n_layers, size)

    @property
    def size(self) -> int:
        """Number of coordinates (all arrays)."""
        return self.offsets[-1]

    def cat(self, arrays: Sequence[np.ndarray]) -> F:
        if not arrays:
            return np.zeros(0)
        return np.concatenate([np.ravel(np.asarray(a, dtype=np.float64)) for a in arrays])

    def split(self, flat: F) -> tuple[F, ...]:
        return tuple(
            flat[self.offsets[i] : self.offsets[i + 1]].reshape(s)
            for i, s in enumerate(self.shapes)
        )

    def locate(self, k: int) -> tuple[int, tuple[int, ...]]:
        """(array index, index within the array) of flat coordinate ``k``."""
        i = int(np.searchsorted(self.offsets, k, side="right") - 1)
        while self.offsets[i + 1] == self.offsets[i]:  # skip empty arrays
            i += 1
        idx = np.unravel_index(k - self.offsets[i], self.shapes[i]) if self.shapes[i] else ()
        return i, tuple(int(x) for x in idx)

    def layer_sum(self, x: F) -> F:
        return np.bincount(self.layer_id, weights=x, minlength=self.n_layers)

    def layer_min(self, x: F) -> F:
        out = np.full(self.n_layers, np.inf)
        np.minimum.at(out, self.layer_id, x)
        return out

    def layer_max(self, x: F) -> F:
        out = np.full(self.n_layers, -np.inf)
        np.maximum.at(out, self.layer_id, x)
        return out
