"""Which arrays form which layer.

A layering is a tuple of layers; a layer is a tuple of array indices. Every array belongs to
exactly one layer. The default, as in public PyTorch code, is one layer per array (per tensor).
A layer's coordinates are the concatenation of its arrays' entries in the order given.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Layers = tuple[tuple[int, ...], ...]


def default_layers(n_arrays: int) -> Layers:
    """One layer per array: ``((0,), (1,), ..., (n_arrays - 1,))``."""
    if n_arrays < 0:
        raise ValueError(f"n_arrays must be >= 0, got {n_arrays}")
    return tuple((i,) for i in range(n_arrays))


def validate_layers(layers: object, n_arrays: int) -> Layers:
    """Return ``layers`` as a tuple of tuples after checking it partitions ``range(n_arrays)``.

    ``None`` means the default (one layer per array). Raises ``ValueError`` naming the offending
    layer and index: an index out of range, an index in two layers, an array in no layer, an empty
    layer, or a non-integer index. Indices may be Python or NumPy integers (not bools); a layer
    may be a 1-D integer array.
    """
    if layers is None:
        return default_layers(n_arrays)
    if isinstance(layers, np.ndarray) and layers.ndim == 2:
        layers = list(layers)
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
        raise ValueError(f"layers must be a sequence of sequences of array indices, got {layers!r}")
    seen: dict[int, int] = {}
    out: list[tuple[int, ...]] = []
    for li, layer in enumerate(layers):
        if isinstance(layer, np.ndarray) and layer.ndim == 1:
            layer = layer.tolist()
        if isinstance(layer, (str, bytes)) or not isinstance(layer, Sequence):
            raise ValueError(f"layers[{li}] must be a sequence of array indices, got {layer!r}")
        if len(layer) == 0:
            raise ValueError(f"layers[{li}] is empty: every layer needs at least one array")
        idx: list[int] = []
        for a in layer:
            # NumPy integers count (np.int64 from an index array); bool is not an index
            if isinstance(a, (bool, np.bool_)) or not isinstance(a, (int, np.integer)):
                raise ValueError(f"layers[{li}] holds {a!r}, which is not an array index (int)")
            a = int(a)
            if not 0 <= a < n_arrays:
                raise ValueError(f"layers[{li}] names array {a}, outside range(0, {n_arrays})")
            if a in seen:
                raise ValueError(
                    f"array {a} is in layers[{seen[a]}] and layers[{li}]: each array must be in "
                    "exactly one layer"
                )
            seen[a] = li
            idx.append(a)
        out.append(tuple(idx))
    missing = [a for a in range(n_arrays) if a not in seen]
    if missing:
        raise ValueError(
            f"arrays {missing} are in no layer: each array must be in exactly one layer"
        )
    return tuple(out)
