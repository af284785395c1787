"""Our JAX setadam on 4- and 8-device CPU meshes, checked by the harness; run as a subprocess.

``python -m conformance.tests.sharded.jax_mesh_check MESH... --scenarios NAME...`` sets
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` before jax is imported (a test process
may already hold a 1-device jax), checks :class:`~conformance.adapters.sharded_jax.MeshOptaxPort`
around our ``setadam`` with ``check_port`` on every mesh size given (1 is the unsharded run),
and prints one JSON object: per mesh, the verdict, the message, the worst budget fraction, the
collectives XLA compiled into a step, how the parameters were laid out, and the largest
difference between the final parameters of the sharded and the unsharded runs (of the first
``--compare`` scenarios), in float32 ulps, and per scenario its status, reason and the
quantities judged re-synced and free-running.
"""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()

import argparse
import json
from typing import Any

import numpy as np

from conformance.adapters.ours_jax import make_for
from conformance.adapters.sharded_jax import MeshOptaxPort
from conformance.runner import check_port
from conformance.scenarios import Scenario, get
from setadam_ref import Config, SETAdamConfig


def factory(devices: int, made: list[MeshOptaxPort]) -> Any:
    def make(cfg: Config) -> MeshOptaxPort:
        from conformance.ports.jax_setadam import setadam

        assert isinstance(cfg, SETAdamConfig)
        b1, b2 = cfg.betas
        port = MeshOptaxPort(
            f"ours.jax.setadam@{devices}dev",
            lambda: setadam(cfg.lr, b1=b1, b2=b2, eps=cfg.eps, tau=cfg.tau,
                            weight_decay=cfg.weight_decay,
                            weight_decay_mode=cfg.weight_decay_mode, maximize=cfg.maximize),
            "float32", devices=devices, betas=cfg.betas,
            make_for=make_for,  # a contract's groups and schedules (configure)
        )  # fmt: skip
        made.append(port)
        return port

    return make


def final_params(devices: int, sc: Scenario) -> list[np.ndarray]:
    port = factory(devices, [])(sc.config("setadam"))
    prob = sc.problem(True)
    port.reset(prob.params0, None)
    for t in range(1, prob.steps + 1):
        port.step(prob.gradient(t, port.params()))
    return list(port.params())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("meshes", type=int, nargs="+")
    ap.add_argument("--scenarios", nargs="+", required=True)
    ap.add_argument("--compare", type=int, default=1, help="scenarios also run unsharded")
    args = ap.parse_args()
    scs = [get(n) for n in args.scenarios]
    out: dict[str, Any] = {}
    compare = scs[: args.compare]
    base = {sc.name: final_params(1, sc) for sc in compare}
    for n in args.meshes:
        made: list[MeshOptaxPort] = []
        r = check_port(factory(n, made), "setadam", scenarios=scs, dtype="float32", quick=True)
        ulps = 0.0
        for sc in compare:
            for a, b in zip(final_params(n, sc), base[sc.name]):
                if a.size:
                    spacing = np.spacing(np.abs(b).astype(np.float32)).astype(np.float64)
                    ulps = max(ulps, float(np.max(np.abs(a - b) / spacing)))
        out[str(n)] = dict(
            verdict=r.verdict, message=r.message, worst=r.worst_fraction(),
            collectives=[p.compiled_collectives for p in made],
            shardings=[p.shardings() for p in made[:len(scs)]],
            ulps_vs_unsharded=ulps,
            scenarios={x.scenario: dict(status=x.status, reason=x.reason, resync=sorted(x.resync),
                                        free=sorted(x.free)) for x in r.scenarios},
        )  # fmt: skip
    print(json.dumps(out))


if __name__ == "__main__":
    main()
