"""The chunked comparison budget is bitwise the whole step's (conformance.tolerance.chunked).

Chunk sizes that cut arrays inside a layer, group small arrays into whole layers, or cannot
group them (a layer whose arrays are not consecutive), over SET-Adam (tau > 0 and 0, l2 decay)
and Adam with amsgrad, float64 / float32 / bfloat16 with float32 state, with carried input
errors and gradients spanning 20 decades (subnormal v in float32: the underflow terms).
"""

from __future__ import annotations

import numpy as np
import pytest

import setadam_ref as R
from conformance.layout import Flat
from conformance.tolerance import InputErrors, StepRef, comparison_bounds
from conformance.tolerance.chunked import StepSource, chunked_comparison_bounds, chunks

SHAPES = [(37, 5), (300,), (0,), (129,), (3,), (4, 4), (50,)]
LAYERS = ((0, 2), (1,), (3,), (4,), (5, 6))
PARTS = ("params", "m", "v", "vmax", "cos2")
CONFIGS = [
    R.SETAdamConfig(lr=1e-2),
    R.SETAdamConfig(lr=1e-2, tau=0.0),
    R.SETAdamConfig(lr=1e-3, weight_decay=0.1, weight_decay_mode="l2"),
    R.AdamConfig(lr=1e-2, amsgrad=True),
]


def _steps(cfg: R.Config, n: int = 2) -> list[tuple[StepRef, StepSource, InputErrors]]:
    rng = np.random.default_rng(1)
    flat = Flat.make(SHAPES, LAYERS)
    p = tuple(rng.standard_normal(s) for s in SHAPES)
    st = R.init(p, cfg)
    out = []
    for _ in range(n):
        g = tuple(rng.standard_normal(s) * 10.0 ** rng.integers(-20, 3, size=s) for s in SHAPES)
        p1, st1, tr = R.step(p, g, st, cfg, LAYERS, trace=True)
        assert tr is not None
        k = flat.size
        vmax = rng.random(k) * 1e-14 if st.vmax is not None else None
        ein = InputErrors(rng.random(k) * 1e-9, rng.random(k) * 1e-12, rng.random(k) * 1e-14, vmax)
        out.append(
            (StepRef.from_trace(flat, p, st, p1, tr), StepSource.of_trace(p, st, p1, tr), ein)
        )
        p, st = p1, st1
    return out


def test_chunks_cover_every_coordinate_once_in_order() -> None:
    flat = Flat.make(SHAPES, LAYERS)
    for size in (7, 64, 100, 300):
        cs = chunks(flat, size)
        assert [c.lo for c in cs[1:]] == [c.hi for c in cs[:-1]]
        assert cs[0].lo == 0 and cs[-1].hi == flat.size
        assert all(c.size <= size or len(c.arrays) == 1 for c in cs)
    # size 100 groups arrays 4..6 (layers 3 and 4, closed); 64 cannot close layer 4's group
    assert any(c.whole and c.arrays == (4, 5, 6) for c in chunks(flat, 100))
    assert not any(c.whole and 5 in c.arrays and 6 not in c.arrays for c in chunks(flat, 64))


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: repr(c)[:40])
@pytest.mark.parametrize(
    ("dtype", "sdt"), [("float64", None), ("float32", None), ("bfloat16", "float32")]
)
def test_chunked_bounds_are_the_whole_steps_bitwise(
    cfg: R.Config, dtype: str, sdt: str | None
) -> None:
    flat = Flat.make(SHAPES, LAYERS)
    for ref, src, ein in _steps(cfg):
        full = comparison_bounds(cfg, ref, flat, dtype, ein, None, sdt)
        for size in (7, 64, 100, 300, 10**6):  # the last: one chunk, the whole-step path
            got = chunked_comparison_bounds(
                cfg, src, flat, dtype, ein, None, sdt, parts=PARTS, size=size
            )
            assert got[0].values.keys() == full[0].values.keys()
            for part in (1, 2):
                assert set(got[part].values) == {k for k in PARTS if k in full[part]}
            for want, have in zip(full, got, strict=True):
                for k, a in have.values.items():
                    assert a.tobytes() == want[k].tobytes(), (size, k)
        # a flat StepRef read in place gives the same as the trace
        by_ref = chunked_comparison_bounds(
            cfg, StepSource.of_ref(ref, flat), flat, dtype, ein, None, sdt, size=64
        )
        for k, a in by_ref[0].values.items():
            assert a.tobytes() == full[0][k].tobytes(), k


def test_a_near_miss_a_pairwise_chunk_sum_is_not_bitwise() -> None:
    """Why the layer sums continue bincount's running sum: summing each chunk on its own and
    adding the partial sums (what a naive chunking does) moves the last bits."""
    x = np.random.default_rng(3).random(10**5) * 10.0 ** np.random.default_rng(4).integers(
        -8, 8, 10**5
    )
    whole = np.bincount(np.zeros(x.size, dtype=np.int64), weights=x)[0]
    naive = sum(float(np.sum(x[a : a + 4096])) for a in range(0, x.size, 4096))
    acc = np.zeros(1)
    for a in range(0, x.size, 4096):
        acc[0] = np.add.accumulate(np.concatenate((acc, x[a : a + 4096])))[-1]
    assert acc[0] == whole
    assert naive != whole
