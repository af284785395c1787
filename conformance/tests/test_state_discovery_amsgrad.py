"""vmax told from v by its defining relation, and an amsgrad state never re-synced without it.

The false alarm a 120-s fuzz run of torch.optim.Adam found (seed 11): shrunk to 275 steps of
one one-element array, lr 0.1, betas (0.9, 0.9999), eps 1e-16, amsgrad, L2 weight decay 0.1.
The old probe had one g_2 = 0 coordinate per array with |g_1| = 1, where v stood still since
(wd lr)^2 = (1 - b2) g_1^2: max_exp_avg_sq was not found and a re-synced step left it stale
(stage vmax, 2.2e7 x budget at step 275). The tests below: that case passes with its re-synced
steps judged; a port whose second probe gradient is not zero on those coordinates (it decays a
parameter copy of its own) still has its vmax found, even when the coincidence holds on one of
them; past the stated limit vmax is not found and an amsgrad state is refused with the reason;
and outside ports whose maximum the harness cannot reach are not judged re-synced (correct) or
fail free-running (wrong).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from conformance.adapters import state_discovery as SD
from conformance.tests.test_state_discovery import _leaves

SHAPES = [(1,), (5,), (4, 3)]


def _store(m: Any, v: Any, vm: Any, t: int) -> dict[SD.Path, Any]:
    out: dict[SD.Path, Any] = {}
    for i in range(len(m)):
        out[(("state", i), ("key", "exp_avg"))] = m[i]
        out[(("state", i), ("key", "exp_avg_sq"))] = v[i]
        out[(("state", i), ("key", "max_exp_avg_sq"))] = vm[i]
        out[(("state", i), ("key", "step"))] = t
    return out


def _own_copy_probe(lr: float, wd: float, b2: float, b1: float = 0.9) -> SD.StateLayout:
    """The probe's two steps on a NumPy torch-style amsgrad Adam with L2 decay of a parameter
    copy it keeps itself (so the adapter's zeroing of the parameters does not reach it: the
    second gradient is g_2 + wd theta_1, the case the old probe could not tell apart)."""
    shapes = SD.probe_shapes(SHAPES)
    g1, g2 = SD.probe_gradients(shapes)
    theta = [np.zeros(s) for s in shapes]
    m = [np.zeros(s) for s in shapes]
    v = [np.zeros(s) for s in shapes]
    vm = [np.zeros(s) for s in shapes]
    snaps = [_leaves(_store(m, v, vm, 0))]
    for t, g in enumerate((g1, g2), 1):
        ge = [x + wd * th for x, th in zip(g, theta, strict=True)]
        m = [b1 * a + (1 - b1) * x for a, x in zip(m, ge, strict=True)]
        v = [b2 * a + (1 - b2) * x * x for a, x in zip(v, ge, strict=True)]
        vm = [np.maximum(a, b) for a, b in zip(vm, v, strict=True)]
        theta = [
            th - lr / (1 - b1**t) * a / (np.sqrt(b / (1 - b2**t)) + 1e-16)
            for th, a, b in zip(theta, m, vm, strict=True)
        ]
        snaps.append(_leaves(_store(m, v, vm, t)))
    return SD.discover(shapes, *snaps)


def _roles(lay: SD.StateLayout) -> tuple[str, str]:
    return str(lay.v[0].path[-1][1]), str(lay.vmax[0].path[-1][1]) if lay.vmax else ""


def test_probe_arrays_have_several_zero_coordinates_of_different_g1() -> None:
    shapes = SD.probe_shapes([(1,), (), (2, 2), (0,), (30,)])
    assert shapes[:4] == [(12,), (12,), (2, 6), (12,)] and shapes[4] == (30,)
    g1, g2 = SD.probe_gradients(shapes)
    for a, b in zip(g1, g2, strict=True):
        on_zero = np.abs(a[b == 0.0])
        assert on_zero.size >= 4 and np.unique(on_zero).size == on_zero.size
        assert on_zero.max() >= 2.0 and np.abs(a).max() < 8.0  # under an elementwise clip at 10


def test_the_shrunk_fuzz_case_finds_vmax_even_on_a_parameter_copy() -> None:
    # lr 0.1, wd 0.1, b2 0.9999: (wd lr)^2 = (1 - b2) * 1^2, the coincidence of the old probe
    assert _roles(_own_copy_probe(0.1, 0.1, 0.9999)) == ("exp_avg_sq", "max_exp_avg_sq")


def _coinciding_wd(which: Any, lr: float, b2: float) -> float:
    """wd making v stand still, (wd lr)^2 = (1 - b2) g_1^2, on the g_2 = 0 coordinate of array 1
    that ``which`` (min or max) picks by |g_1|."""
    g1, g2 = SD.probe_gradients(SD.probe_shapes(SHAPES))
    on_zero = np.abs(g1[1][g2[1] == 0.0])
    return math.sqrt(1 - b2) * float(which(on_zero)) / lr


def test_a_coincidence_on_one_zero_coordinate_does_not_hide_vmax() -> None:
    # the old case's coincidence, on the smallest |g_1| of array 1: v falls on its others
    lay = _own_copy_probe(0.1, _coinciding_wd(np.min, 0.1, 0.999), 0.999)
    assert _roles(lay) == ("exp_avg_sq", "max_exp_avg_sq")
    assert lay.refusal(amsgrad=True) == ""
    # near miss, the stated limit exactly: on its largest |g_1|, v rises or stands still on
    # every coordinate of array 1, so vmax is not found there and amsgrad is refused
    lay = _own_copy_probe(0.1, _coinciding_wd(np.max, 0.1, 0.999), 0.999)
    assert not lay.vmax and "vmax" in lay.refusal(amsgrad=True)


def test_past_the_stated_limit_vmax_is_not_found_and_amsgrad_is_refused() -> None:
    # wd |theta_1| = 10 >= sqrt(1 - b2) * max |g_1|: v rises on every coordinate of the probe
    lay = _own_copy_probe(1.0, 10.0, 0.999)
    assert lay.v and not lay.vmax and lay.writable
    assert any("none was told from v as vmax" in n for n in lay.notes)
    assert lay.refusal(amsgrad=False) == ""
    assert "amsgrad maximum vmax" in lay.refusal(amsgrad=True)
    assert "stale" in lay.refusal(amsgrad=True)


# ------------------------------------------------------------------------ through the harness
torch = pytest.importorskip("torch")

from conformance.fuzz.cases import Case  # noqa: E402
from conformance.fuzz.command import target_spec  # noqa: E402
from conformance.runner import check_port  # noqa: E402

#: the case the 120-s fuzz run of torch.optim.Adam (seed 11) shrank to
_AMSGRAD_CASE = Case(
    "adam", ((1,),), ("normal",), (0,),
    (("lr", 0.1), ("betas", (0.9, 0.9999)), ("eps", 1e-16), ("amsgrad", True),
     ("weight_decay", 0.1)),
    275, 0,
)  # fmt: skip
_PORTS = "conformance.tests.amsgrad_wrong.ports:"


def test_torch_adam_amsgrad_with_l2_decay_passes_its_re_synced_steps() -> None:
    r = check_port(target_spec("torch.optim:Adam", "torch", "adam"),
                   scenarios=[_AMSGRAD_CASE.scenario()], diagnose=False)  # fmt: skip
    assert r.verdict == "pass", r.message
    (sr,) = r.scenarios
    assert sr.resync and "not judged re-synced" not in sr.reason, sr.reason


def test_torch_adam_probe_finds_max_exp_avg_sq_in_the_shrunk_config() -> None:
    from conformance.adapters._torch import TorchOptimizerPort

    kw = {"lr": 0.1, "betas": (0.9, 0.9999), "eps": 1e-16, "weight_decay": 0.1, "amsgrad": True}
    port = TorchOptimizerPort("adam", lambda g: torch.optim.Adam(g, **kw), "float64")
    lay = port.layout([(1,)])
    assert _roles(lay) == ("exp_avg_sq", "max_exp_avg_sq")


def test_a_maximum_out_of_reach_is_not_judged_re_synced_and_a_wrong_one_still_fails() -> None:
    ok = check_port(target_spec(_PORTS + "CachedPeakAdam", "torch", "adam"),
                    scenarios=["amsgrad"], diagnose=False)  # fmt: skip
    assert ok.verdict == "pass", ok.message
    (sr,) = ok.scenarios
    assert not sr.resync and sr.free
    assert sr.reason.startswith("not judged re-synced: ") and "vmax" in sr.reason, sr.reason
    assert "stale" in ok.state_note
    bad = check_port(target_spec(_PORTS + "ForgetfulPeakAdam", "torch", "adam"),
                     scenarios=["amsgrad"], diagnose=False)  # fmt: skip
    assert bad.verdict == "fail"
    assert bad.failures and all(f.mode == "free" for f in bad.failures)
