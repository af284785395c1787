"""Param groups and lr schedules on a 4-device JAX mesh: judged there, re-synced, as unsharded.

Before, the mesh adapter had no transformation for a contract's config, so every sharded JAX
target skipped ``groups``, ``groups_decoupled`` and ``schedules`` ("the adapter has no
transformation for a config"), and a mesh port building each group with group 0's options
passed a sharded check. Now :class:`~conformance.adapters.sharded_jax.MeshOptaxPort` takes the
``make_for`` of :class:`~conformance.adapters._jax.OptaxPort` (``optax.multi_transform`` over
the groups, the schedule as ``learning_rate``), its jitted step reading the transformation that
``configure`` built. The check runs in a subprocess
(:mod:`conformance.tests.sharded.jax_mesh_contract`): 4 host devices must exist before jax is
imported.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("jax")
pytest.importorskip("optax")

ROOT = Path(__file__).resolve().parents[2]
FAMILIES = ("groups", "groups_decoupled", "schedules")


@functools.cache
def _mesh() -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run(
        [sys.executable, "-m", "conformance.tests.sharded.jax_mesh_contract", "4"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


@pytest.mark.parametrize("who", ["ours", "kit"])
@pytest.mark.parametrize("family", FAMILIES)
def test_groups_and_schedules_are_judged_resynced_on_the_mesh(who: str, family: str) -> None:
    """Our setadam (float32) and an outsider's optax-style Adam (float64): params, m and v
    judged re-synced and free-running on the mesh, within budget."""
    s = _mesh()[who][family]
    assert s["status"] == "pass", s
    assert s["resync"] == ["m", "params", "v"] and s["free"] == ["m", "params", "v"], s
    assert s["worst"] is not None and 0.0 < s["worst"] <= 1.0, s


def test_partial_gradients_are_skipped_with_optax_reason() -> None:
    s = _mesh()["ours"]["sparse"]
    assert s["status"] == "skip"
    assert "optax has no absent gradient" in s["reason"]


def test_group0_eps_for_every_group_fails_groups_on_the_mesh_only() -> None:
    """The kit's builder taking group 0's eps (1e-8) for group 1 (1e-6): the sharded scenario
    with groups dealt alike passes it; ``groups`` rejects it at re-synced step 1, array 2 (group
    1's), stage params, by orders of magnitude (not a rounding matter: no near miss to draw)."""
    h = _mesh()["hoisted"]
    assert h["shard_groups"]["status"] == "pass", h["shard_groups"]
    g = h["groups"]
    assert g["status"] == "fail"
    assert g["first"] == ["resync", 1, 2, "params"], g
    assert g["worst"] > 1e6, g
