"""Our sharded ports in ``setadam-conformance run``: torch SETAdam on 2 and 4 gloo ranks, JAX
setadam on a 4-device mesh, over the sharding scenarios.

The torch ports are :class:`~conformance.adapters.rank_pool.PooledPort` s on the process's
shared rank pools (:func:`~conformance.adapters.rank_pool.shared`): one pool per rank count for
the whole run, started once by :func:`prepare` in a background thread while the other ports are
checked, and reused by every scenario (the ranks fork from one forkserver that imported torch
once). They run in the harness process (no worker: the ranks are processes of their own, and
every call to them has a deadline, so a rank that hangs or dies ends its check, not the run).
The JAX port is :class:`~conformance.adapters.sharded_jax.MeshOptaxPort` in a worker, which sees
``MESH_DEVICES`` host devices because :func:`mesh_devices` tells ``run`` to set ``XLA_FLAGS``
before any worker starts (the other JAX ports still run on device 0).

What is run is bounded by ``run``'s time budgets (3 min default, 30 s ``--quick`` on 2 cores):
the default run checks the torch ports in the float64/float32 pairs of :data:`TORCH`, on every
sharding scenario, and the JAX mesh on :data:`JAX_SCENARIOS`; ``--quick`` checks 2 ranks on one
scenario. What is left out is said in the run's notes (:func:`notes`), never silently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from setadam_ref import Config, SETAdamConfig

from ..results import PortSpec
from ..scenarios import SHARDING

OURS = "conformance.ports.torch_setadam:SETAdam"
#: (ranks, dtype, foreach) of the default run: both paths, both dtypes, both rank counts
TORCH: tuple[tuple[int, str, bool], ...] = ((2, "float64", True), (4, "float32", False))
#: the --quick run: 2 ranks, float64, one scenario (uneven rows: the split the bugs live in)
QUICK_TORCH: tuple[int, str, bool] = (2, "float64", True)
QUICK_SCENARIOS: tuple[str, ...] = ("shard_uneven",)
MESH_DEVICES = 4
#: the mesh's scenarios: each is one XLA compilation of the sharded step (1-3 s on 2 cores);
#: ``groups``: a contract's param groups as ``optax.multi_transform`` on the mesh
JAX_SCENARIOS: tuple[str, ...] = ("shard_even", "shard_uneven", "shard_zero_size", "groups")
#: the per-call timeout of the pooled ports: covers waiting for the pool to start (the ranks'
#: own per-call deadline, 45 s, still ends a hung step first)
POOLED_TIMEOUT_S = 300.0
ALL_SHARDING = tuple(s.name for s in SHARDING)
#: contract scenarios the torch ranks also take in the default run (about 1 s each on a started
#: pool): param groups, an lr schedule, gradients on some steps only
TORCH_CONTRACT: tuple[str, ...] = ("groups", "schedules", "sparse")


def torch_name(ranks: int, foreach: bool) -> str:
    return f"ours.torch.SETAdam[sharded-{'foreach' if foreach else 'single'}]@{ranks}ranks"


def jax_name() -> str:
    return f"ours.jax.setadam@{MESH_DEVICES}dev"


def _supports(cfg: Config) -> str | None:
    return None if isinstance(cfg, SETAdamConfig) else "SETAdam implements SET-Adam, not Adam"


def _pooled(ranks: int, dtype: str, foreach: bool) -> Callable[[Config], Any]:
    def make_port(cfg: Config) -> Any:
        from . import rank_pool

        pool = rank_pool.shared(ranks)
        opts = {"kwargs": {"foreach": foreach}}
        return rank_pool.PooledPort(
            pool, OURS, cfg, dtype, name=torch_name(ranks, foreach), options=opts
        )

    return make_port


def _mesh(dtype: str) -> Callable[[Config], Any]:
    def make_port(cfg: Config) -> Any:
        from .ours_jax import make_for, transformation
        from .sharded_jax import MeshOptaxPort

        return MeshOptaxPort(
            jax_name(), transformation(cfg), dtype, devices=MESH_DEVICES, betas=cfg.betas,
            make_for=make_for,
        )  # fmt: skip

    return make_port


def torch_specs(dtypes: Sequence[str], quick: bool) -> list[PortSpec]:
    """The pooled torch ports (no locator: they run in the harness process)."""
    plan = (QUICK_TORCH,) if quick else TORCH
    scenarios = QUICK_SCENARIOS if quick else ALL_SHARDING + TORCH_CONTRACT
    return [
        PortSpec(
            torch_name(n, fe),
            "setadam",
            dt,
            "cpu",
            _pooled(n, dt, fe),
            _supports,
            timeout_s=POOLED_TIMEOUT_S,
            scenarios=scenarios,
        )
        for n, dt, fe in plan
        if dt in dtypes
    ]


def jax_specs(dtypes: Sequence[str]) -> list[PortSpec]:
    """The JAX mesh port (float32; run in a worker with ``MESH_DEVICES`` host devices)."""
    if "float32" not in dtypes:
        return []
    return [PortSpec(jax_name(), "setadam", "float32", "cpu", _mesh("float32"), _supports,
                     scenarios=JAX_SCENARIOS)]  # fmt: skip


def is_pooled(spec: PortSpec) -> bool:
    """A pooled torch port (checked in the harness process, not in a worker)."""
    return spec.name.startswith("ours.torch.SETAdam[sharded-") and spec.name.endswith("ranks")


def rank_counts(specs: Sequence[PortSpec]) -> list[int]:
    """The rank counts the pooled ports of ``specs`` need, smallest first."""
    return sorted({int(s.name.rsplit("@", 1)[1][: -len("ranks")]) for s in specs if is_pooled(s)})


def mesh_devices(specs: Sequence[PortSpec]) -> int | None:
    """The host devices the JAX workers need for the mesh port of ``specs`` (None: none)."""
    return MESH_DEVICES if any(s.name == jax_name() for s in specs) else None


def prepare(specs: Sequence[PortSpec]) -> None:
    """Start the rank pools ``specs`` need, in the background (see the module docstring)."""
    sizes = rank_counts(specs)
    if sizes:
        from . import rank_pool

        rank_pool.prestart(sizes)


def notes(quick: bool, dtypes: Sequence[str]) -> list[str]:
    """What the run leaves out of the sharded checks, and why (the run's notes)."""
    out = [
        "sharded ports: NCCL (--device cuda, several GPUs) is not checked here; 8-device JAX "
        "meshes and the other rank/dtype/path combinations are checked by the test suite "
        "(test_sharded_torch.py, test_sharded_jax.py) and by --port"
    ]
    if quick:
        out.append(
            f"--quick checks {torch_name(QUICK_TORCH[0], QUICK_TORCH[2])} float64 on "
            f"{', '.join(QUICK_SCENARIOS)} only: 4 ranks and the {MESH_DEVICES}-device JAX mesh "
            "are left out (starting 4 ranks or a mesh worker does not fit 30 s on 2 cores)"
        )
    else:
        left = [s for s in ALL_SHARDING if s not in JAX_SCENARIOS]
        out.append(
            f"{jax_name()} float32 on {', '.join(JAX_SCENARIOS)} only ({', '.join(left)} left "
            "out: each scenario is one XLA compilation, which the 3-minute budget does not fit)"
        )
    if "float32" not in dtypes or "float64" not in dtypes:
        out.append("sharded ports run in float64 (2 ranks) and float32 (4 ranks, JAX mesh) only")
    return out
