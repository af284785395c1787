"""Tolerance-model bounds of a few runs, kept as a snapshot: the fast paths must not move a bit.

:func:`snapshot` computes, with the tree's own tolerance model, every bound of the free-running
budget and of the re-synced steps of a few short reference runs: SET-Adam in float64, float32 and
bfloat16 with float32 state (one 3-element array with beta2 = 0.9999, the fuzzer's long-horizon
case, and layers of mixed magnitudes down to the underflow range), Adam with amsgrad, coupled and
decoupled weight decay, tf's epsilon form, and param groups (a contract scenario). The stored
file ``data/bounds_snapshot.json`` (digests) was written by ``python conformance/tests/bounds_snapshot.py
PATH`` with the package of the commit before the fast paths first on ``PYTHONPATH``; it uses only
APIs of that commit. Regenerate it (and say why in the commit) only when a bound changes on
purpose.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from conformance.fuzz.cases import Case, base_of
from conformance.reference_run import build_reference_for
from conformance.scenarios import CONTRACT
from setadam_ref import AdamConfig, SETAdamConfig

STEPS = 8


def _runs() -> list[tuple[str, Any, Any, str, str]]:
    """(name, problem, config, dtype, state dtype) of every run in the snapshot."""
    tiny = Case("setadam", ((3,),), ("normal",), (0,), (("betas", (0.9, 0.9999)),), STEPS, 1)
    mixed = Case(
        "setadam", ((5,), (1,), (4, 2)), ("normal", "onehot", "zero"), (-14, 3, 0),
        (("tau", 0.9),), STEPS, 7,
    )  # fmt: skip
    st = base_of("setadam")
    out: list[tuple[str, Any, Any, str, str]] = []
    for dt, sdt in (("float64", "float64"), ("float32", "float32"), ("bfloat16", "float32")):
        out.append((f"tiny_{dt}_{sdt}", tiny.problem(), tiny.config(st), dt, sdt))
        out.append((f"mixed_{dt}_{sdt}", mixed.problem(), mixed.config(st), dt, sdt))
    adam = Case("adam", ((6,), (2, 3)), ("normal", "normal"), (-3, 2), (), STEPS, 3).problem()
    adams = {
        "amsgrad_l2": AdamConfig(amsgrad=True, weight_decay=0.1, weight_decay_mode="l2"),
        "amsgrad_optax": AdamConfig(amsgrad=True, amsgrad_mode="optax"),
        "decoupled": AdamConfig(weight_decay=1e-2, weight_decay_mode="decoupled"),
        "tf_eps": AdamConfig(eps_mode="tf"),
    }
    for name, cfg in adams.items():
        out.append((f"adam_{name}_float32", adam, cfg, "float32", "float32"))
    for sc in (s for s in CONTRACT if s.name in ("groups", "groups_decoupled")):
        for alg, cfg0 in (("setadam", SETAdamConfig()), ("adam", AdamConfig())):
            cfg = sc.config(alg, cfg0)
            out.append((f"{sc.name}_{alg}_float32", sc.problem(True), cfg, "float32", "float32"))
    return out


def snapshot() -> dict[str, str]:
    """The sha256 of every bound of the runs, by ``run/free|resync/quantity`` (the float64 bytes
    of the bound at every step, in step order)."""
    out: dict[str, Any] = {}
    for name, problem, cfg, dt, sdt in _runs():
        rr = build_reference_for(problem, cfg, dt, sdt, name)
        assert not rr.error, (name, rr.error)
        steps = [("free", b) for b in rr.free_bounds]
        steps += [("resync", rr.resync[t].bounds) for t in sorted(rr.resync)]
        for mode, b in steps:
            for q, v in b.values.items():
                h = out.setdefault(f"{name}/{mode}/{q}", hashlib.sha256())
                h.update(np.ascontiguousarray(v, dtype=np.float64).tobytes())
    return {k: h.hexdigest() for k, h in out.items()}


if __name__ == "__main__":
    import conformance

    print(f"bounds of the package in {conformance.__file__}")
    Path(sys.argv[1]).write_text(json.dumps(snapshot(), indent=0, sort_keys=True) + "\n")
