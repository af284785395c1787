"""State kept per param group, found per group (pure NumPy layouts): ``discover_groups`` with a
flat buffer per group (``View.within``), each group fitted with its own betas, a count per group,
the frozen arrays stateless; ``state_views`` reads and writes a group's segments at the offsets
of the shapes at hand and refuses an entry of another size; ``state_groups.per_parameter`` tells
the layouts a one-group probe finds as they are in a run with several groups."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from conformance.adapters import state_discovery as SD
from conformance.adapters import state_groups as SG
from conformance.adapters import state_views as SV
from conformance.tests.test_state_discovery import _dict_style, _leaves, _probe

SHAPES = [(4, 3), (5,), (3, 2), (7,)]
#: two groups with their own betas; array 3 frozen (no gradient, no state)
GROUPS = [((0, 1), (0.9, 0.999)), ((2,), (0.8, 0.99))]


def _flat_per_group(m: list[np.ndarray], v: list[np.ndarray], t: list[int]) -> dict[SD.Path, Any]:
    """An outsider's layout: per group a flat m and v of its arrays back to back, a count."""
    out: dict[SD.Path, Any] = {}
    for k, (arrays, _b) in enumerate(GROUPS):
        out[(("group", k), ("key", "fm"))] = np.concatenate([m[i].ravel() for i in arrays])
        out[(("group", k), ("key", "fv"))] = np.concatenate([v[i].ravel() for i in arrays])
        out[(("group", k), ("key", "n"))] = t[k]
    return out


def _group_probe(store: Any, corrected: int | None = None) -> SD.StateLayout:
    """Two probe steps of a NumPy Adam per group (group ``corrected`` keeps a bias-corrected m)."""
    g1, g2 = SD.probe_gradients(SHAPES)
    m = [np.zeros(s) for s in SHAPES]
    v = [np.zeros(s) for s in SHAPES]
    snaps = [_leaves(store(m, v, [0, 0]))]
    for t, g in enumerate((g1, g2), 1):
        for arrays, (b1, b2) in GROUPS:
            for i in arrays:
                m[i] = b1 * m[i] + (1 - b1) * g[i]
                v[i] = b2 * v[i] + (1 - b2) * g[i] ** 2
        shown = [x / (1 - 0.8**t) if corrected == 1 and i == 2 else x for i, x in enumerate(m)]
        snaps.append(_leaves(store(shown, v, [t, t])))
    return SD.discover(SHAPES, *snaps, betas=(0.9, 0.999), groups=GROUPS)


def test_flat_buffer_per_group_read_per_array() -> None:
    lay = _group_probe(_flat_per_group)
    assert lay.writable, lay.why_not()
    fm0, fm1 = (("group", 0), ("key", "fm")), (("group", 1), ("key", "fm"))
    assert lay.m == [SD.View(fm0, 0, None, (0, 1)), SD.View(fm0, 1, None, (0, 1)),
                     SD.View(fm1, 2)]  # fmt: skip
    assert [g.arrays for g in lay.groups] == [(0, 1), (2,)] and lay.stateless == (3,)
    assert [[c.path[0] for c in g.counters] for g in lay.groups] == [[("group", 0)], [("group", 1)]]
    assert "param_groups[0]['fm'] (arrays 0, 1 back to back)" in lay.describe()


def test_segments_at_the_offsets_of_the_shapes_at_hand() -> None:
    """The layout found on the (widened) probe reads and writes the port's own smaller arrays."""
    lay = _group_probe(_flat_per_group)
    shapes = [(2, 3), (1,), (3, 2), (4,)]  # array 1 under the probe's minimum size
    rng = np.random.default_rng(3)
    m = [rng.standard_normal(s) for s in shapes]
    leaves = _leaves(_flat_per_group(m, m, [4, 4]))
    got = SD.gather(leaves, lay.m, shapes)
    for i in (0, 1, 2):
        np.testing.assert_array_equal(got[i], m[i])
    assert not got[3].any()  # the frozen array: no state, read as zeros
    writes = SD.scatter(lay.m, m)
    assert [w.path for w, _ in writes] == [
        (("group", 0), ("key", "fm")),
        (("group", 1), ("key", "fm")),
    ]
    whole = writes[0][1]
    np.testing.assert_array_equal(whole, np.concatenate([m[0].ravel(), m[1].ravel()]))
    assert writes[0][0].array is None  # group 0's flat entry written whole, arrays back to back


def test_an_entry_of_another_size_is_a_mismatch_not_a_misread() -> None:
    lay = _group_probe(_flat_per_group)
    shapes = [(2, 3), (1,), (3, 2), (4,)]
    m = [np.ones(s) for s in shapes]
    values = _flat_per_group(m, m, [1, 1])
    values[(("group", 0), ("key", "fm"))] = np.ones(8)  # padded to a multiple of 4
    with pytest.raises(SV.Mismatch, match=r"holds 8 values where the layout .* asks for 7"):
        SD.gather(_leaves(values), lay.m, shapes)
    with pytest.raises(KeyError):  # what the adapters catch: no state read
        SD.gather(_leaves(values), lay.m, shapes)


def test_each_group_checked_in_its_own_convention() -> None:
    """Group 1 keeps a bias-corrected m: the convention names that group (betas (0.8, 0.99))."""
    lay = _group_probe(_flat_per_group, corrected=1)
    assert lay.convention.startswith("the param group of array 2: m was found at"), lay.convention
    assert "0.2" in lay.convention and not lay.writable


def test_per_parameter_tells_keyed_layouts_from_group_layouts() -> None:
    assert SG.per_parameter(_probe(_dict_style))
    assert not SG.per_parameter(_group_probe(_flat_per_group))

    def lists(m: Any, v: Any, vm: Any, t: int) -> dict[SD.Path, Any]:  # group["m"][j]
        out: dict[SD.Path, Any] = {(("group", 0), ("key", "t")): t}
        for i in range(len(m)):
            out[(("group", 0), ("key", "m"), ("idx", i))] = m[i]
            out[(("group", 0), ("key", "v"), ("idx", i))] = v[i]
        return out

    lay = _probe(lists)
    assert lay.writable and not SG.per_parameter(lay)
    flat = SD.StateLayout(
        m=[SD.View((("attr", "fm"),), None)], v=[SD.View((("attr", "fv"),), None)]
    )
    assert not SG.per_parameter(flat) and not SG.per_parameter(SD.StateLayout())


def test_in_group_maps_local_views() -> None:
    p = (("group", 1), ("key", "fm"))
    assert SG.in_group([SD.View(p, None)], [2, 5]) == [SD.View(p, 2, None, (2, 5)),
                                                      SD.View(p, 5, None, (2, 5))]  # fmt: skip
    assert SG.in_group([SD.View(p, 1, 0)], [2, 5]) == [SD.View(p, 5, 0)]
