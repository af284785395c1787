"""Contract scenarios (param groups, lr schedules) on a JAX device mesh; run as a subprocess.

``python -m conformance.tests.sharded.jax_mesh_contract N`` sets
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` before jax is imported, then checks on an
``N``-device mesh (:class:`~conformance.adapters.sharded_jax.MeshOptaxPort`, its ``configure``
building ``optax.multi_transform`` over the groups and the schedule as ``learning_rate``):

- ``ours``: our setadam on ``groups``, ``groups_decoupled``, ``schedules`` and ``sparse``;
- ``kit``: an outside implementer's optax-style Adam (``conformance.tests.optax_kit``) on the
  three families;
- ``hoisted``: the kit's builder that takes every group's eps from the first config it is given,
  on ``shard_groups`` (a sharded scenario whose groups the harness deals alike: no contract) and
  on ``groups``.

It prints one JSON object: per check, per scenario, the status, the reason, the quantities
judged re-synced and free-running, and the worst budget fraction; for a failure, the first
failing (mode, step, array, stage).
"""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()

import argparse
import json
from collections.abc import Callable
from typing import Any

from conformance.adapters import ours_jax
from conformance.adapters.sharded_jax import MeshOptaxPort
from conformance.results import PortResult
from conformance.runner import check_port
from conformance.tests import optax_kit
from setadam_ref import Config

FAMILIES = ["groups", "groups_decoupled", "schedules"]


def _factory(devices: int, make_for: Callable[[Any, Any], Any], dtype: str) -> Any:
    def make(cfg: Config) -> MeshOptaxPort:
        return MeshOptaxPort(
            f"mesh@{devices}dev", lambda: make_for(cfg, cfg.lr), dtype, devices=devices,
            betas=cfg.betas, make_for=make_for,
        )  # fmt: skip

    return make


def _summary(r: PortResult) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in r.scenarios:
        fails = [f for f in r.failures if f.scenario == s.scenario]
        first = min(fails, key=lambda f: (f.mode != "resync", f.step or 0), default=None)
        out[s.scenario] = dict(
            status=s.status, reason=s.reason, resync=sorted(s.resync), free=sorted(s.free),
            worst=max([w.fraction for w in (*s.resync.values(), *s.free.values())], default=None),
            first=None if first is None else [first.mode, first.step, first.array, first.stage],
        )  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("devices", type=int)
    n = ap.parse_args().devices

    def check(make_for: Any, algorithm: str, scenarios: list[str], dtype: str) -> Any:
        r = check_port(_factory(n, make_for, dtype), algorithm, None, scenarios, quick=True,
                       dtype=dtype, diagnose=False)  # fmt: skip
        return _summary(r)

    out = {
        "ours": check(ours_jax.make_for, "setadam", [*FAMILIES, "sparse"], "float32"),
        "kit": check(optax_kit.make_for, "adam", FAMILIES, "float64"),
        # a builder per port, as a user makes one: its first config is group 0's
        "hoisted": {
            **check(optax_kit.HoistedBuilder(), "adam", ["shard_groups"], "float64"),
            **check(optax_kit.HoistedBuilder(), "adam", ["groups"], "float64"),
        },
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
