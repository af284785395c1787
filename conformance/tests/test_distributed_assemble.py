"""The assembly of a sharded port's full arrays from its ranks' local ones (no framework)."""

from __future__ import annotations

import numpy as np

from conformance.distributed.assemble import full_array, full_arrays, merge
from conformance.interface import PortState
from conformance.session import StepOutputs


def test_shards_are_concatenated_in_rank_order_and_empty_shards_count_for_nothing() -> None:
    a = np.arange(21.0).reshape(7, 3)
    pieces = [a[:2], a[2:4], a[4:6], a[6:]]
    np.testing.assert_array_equal(full_array(pieces, (7, 3)), a)
    np.testing.assert_array_equal(full_array([a[:1], a[1:], np.zeros((0, 3))], (7, 3)), a)


def test_replicated_pieces_give_rank_zeros_and_a_mismatch_is_passed_on() -> None:
    x = np.ones((2, 2))
    assert full_array([x, x * 2], (2, 2)) is not None
    np.testing.assert_array_equal(full_array([x, x * 2], (2, 2)), x)
    odd = [np.ones((2, 3)), np.ones((2, 3))]  # 4 rows where 3 are expected: rank 0's, as is
    assert full_array(odd, (3, 3)) is odd[0]
    assert full_array([np.float64(0.5), np.float64(0.5)], ()) == 0.5
    assert full_arrays([[x], [x, x]], [(2, 2)]) == [x]  # lists of the wrong length: rank 0's


def test_merge_reports_step_counts_that_differ_and_every_ranks_side_effects() -> None:
    a = np.arange(4.0)
    outs = [
        StepOutputs([a[:2]], PortState(3, (a[:2],), (a[:2],)), {"cos2": [np.float64(1.0)]}, []),
        StepOutputs(
            [a[2:]], PortState(2, (a[2:],), (a[2:],)), {"cos2": [np.float64(1.0)]}, ["boom"]
        ),
    ]
    out = merge(outs, [(4,)])
    np.testing.assert_array_equal(out.params[0], a)
    assert out.state is not None and out.state.m is not None
    np.testing.assert_array_equal(out.state.m[0], a)
    assert out.stages is not None and float(out.stages["cos2"][0]) == 1.0
    assert out.side_effects == [
        "rank 1: boom",
        "the ranks' step counts differ after step(): [3, 2]",
    ]
