"""Sharding scenarios: shapes chosen for how ``Shard(0)`` splits them over 2, 4 and 8 ranks.

Each is an ordinary open-loop :class:`~conformance.scenarios.Scenario` (the reference does not
know about ranks); what makes it a sharding scenario is which rows land on which rank:

* ``shard_even``: every dim 0 divisible by 8;
* ``shard_uneven``: dim 0 of 5, 7, 9, 13: the last rank holds fewer rows (DTensor's split is
  ``ceil(n / N)`` rows per rank), so padding to equal shards would be counted as data;
* ``shard_fewer_rows``: 1, 2 and 3 rows and a 0-d array (replicated): some ranks hold nothing;
* ``shard_zero_size``: zero-size arrays between ordinary ones;
* ``shard_big``: one layer of 64k entries split across the ranks;
* ``shard_zero_rows``: the second half of a layer's rows get zero gradients at steps 2 and 3
  (whole shards are zero on some ranks: a port that skips such a shard's step count drifts);
* ``shard_groups``: seven arrays (the sharded port deals them into two param groups, plus its
  sentinel group).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from conformance.scenarios import Problem, Scenario

Shapes = Sequence[tuple[int, ...]]
Draw = Callable[[np.random.Generator, tuple[int, ...], int, int], np.ndarray]


def _gauss(rng: np.random.Generator, s: tuple[int, ...], i: int, t: int) -> np.ndarray:
    # arrays (and rows) of different scales, so that shards' statistics differ
    g = rng.standard_normal(s) * (0.3 + 0.4 * (i % 3))
    if len(s) >= 1 and s[0] > 1:
        rows = np.geomspace(1.0, 8.0, s[0]).reshape((-1,) + (1,) * (len(s) - 1))
        g = g * rows
    return np.asarray(g, dtype=np.float64)


def _zero_rows(rng: np.random.Generator, s: tuple[int, ...], i: int, t: int) -> np.ndarray:
    g = _gauss(rng, s, i, t)
    if i == 0 and 2 <= t <= 3:
        g[s[0] // 2 :] = 0.0
    return g


def _open(shapes: Shapes, draw: Draw = _gauss) -> Callable[[np.random.Generator, int], Problem]:
    def build(rng: np.random.Generator, steps: int) -> Problem:
        params = tuple(rng.standard_normal(s) for s in shapes)
        grads = tuple(
            tuple(draw(rng, s, i, t) for i, s in enumerate(shapes)) for t in range(1, steps + 1)
        )
        return Problem(params, steps, grads=grads)

    return build


def _sc(name: str, description: str, shapes: Shapes, seed: int, draw: Draw = _gauss) -> Scenario:
    return Scenario(
        name, description, _open(shapes, draw), steps=8, quick_steps=4, seed=seed,
        hyper={"lr": 1e-2}, algorithms=("setadam", "adam"), dtypes=("float64", "float32"),
        tags=("open", "sharding"),
    )  # fmt: skip


SHARDING: tuple[Scenario, ...] = (
    _sc("shard_even", "dim 0 divisible by 8", [(8, 6), (16,), (24, 3)], 101),
    _sc("shard_uneven", "dim 0 of 5, 7, 9, 13", [(9, 5), (7,), (13, 2), (5, 3)], 102),
    _sc("shard_fewer_rows", "1 to 3 rows, a 0-d array", [(1, 7), (3, 4), (2,), (1,), ()], 103),
    _sc("shard_zero_size", "zero-size arrays among others", [(0, 4), (6,), (0,), (5, 2)], 104),
    _sc("shard_big", "a layer of 64k entries", [(1024, 64), (64,)], 105),
    _sc("shard_zero_rows", "half a layer's rows zero at steps 2, 3", [(8, 3), (6,)], 106, _zero_rows),
    _sc("shard_groups", "seven arrays in two param groups",
        [(4, 3), (3,), (6, 2), (5,), (2, 2), (7,), (3, 3)], 107),
)  # fmt: skip

BY_NAME = {s.name: s for s in SHARDING}
