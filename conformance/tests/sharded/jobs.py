"""Jobs the sharded tests run in every rank of a :class:`~.pool.RankPool`: real training loops.

Each job returns, from every rank, plain data the parent judges with the tests' oracle
(``conformance/tests/oracle.py``): the full initial parameters, the full gradients each step
actually used and the full parameters after each step, so the reference replays exactly the
gradients the distributed run produced (the loss's feedback is the run's own business).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _full(t: Any) -> np.ndarray:
    from torch.distributed.tensor import DTensor

    x = t.full_tensor() if isinstance(t, DTensor) else t
    return np.array(x.detach().to("cpu").double().numpy(), dtype=np.float64, copy=True)


def _model(dtype: str) -> Any:
    import torch

    torch.manual_seed(0)  # the same initial model on every rank
    # Linear(13, 7): 7 rows (uneven over 2 and 4 ranks); Linear(7, 3): 3 rows, so one of 4
    # ranks holds no row of the last layer
    model = torch.nn.Sequential(torch.nn.Linear(13, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    return model.to(getattr(torch, dtype))


def fsdp_train(steps: int, dtype: str, foreach: bool) -> dict[str, Any]:
    """A 2-layer MLP under FSDP2 (``fully_shard`` per layer and at the root) trained with our
    SETAdam on per-rank data; also counts each step's collectives inside ``opt.step()``."""
    import torch
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    from conformance.adapters.sharded_torch import count_collectives, mesh_for
    from conformance.ports.torch_setadam import SETAdam

    world, rank = dist.get_world_size(), dist.get_rank()
    mesh = mesh_for("cpu", world)
    model = _model(dtype)
    params0 = [_full(p) for p in model.parameters()]
    fully_shard(model[0], mesh=mesh)
    fully_shard(model[2], mesh=mesh)
    fully_shard(model, mesh=mesh)
    opt = SETAdam(model.parameters(), lr=1e-2, foreach=foreach)
    gen = torch.Generator().manual_seed(100 + rank)  # each rank its own batch
    tdt = getattr(torch, dtype)
    grads, params, colls = [], [], []
    for _ in range(steps):
        x = torch.randn(16, 13, generator=gen).to(tdt)
        y = torch.randn(16, 3, generator=gen).to(tdt)
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        grads.append([_full(p.grad) for p in model.parameters()])
        colls.append(count_collectives(torch, opt.step))
        params.append([_full(p) for p in model.parameters()])
        opt.zero_grad()
    local_rows = [int(p.to_local().shape[0]) for p in model.parameters()]
    return dict(
        params0=params0, grads=grads, params=params, collectives=colls, local_rows=local_rows
    )


def zero_train(steps: int, layer: str) -> dict[str, Any]:
    """The same MLP replicated on every rank (identical data, so identical gradients, as after
    DDP's all-reduce) with ``ZeroRedundancyOptimizer(optimizer_class=SETAdam)``; also reports
    which rank owns which parameter and the collectives of each ``step()`` (ZeRO's own
    broadcasts included)."""
    import torch
    import torch.distributed as dist
    from torch.distributed.optim import ZeroRedundancyOptimizer

    from conformance.adapters.sharded_torch import count_collectives
    from conformance.ports.torch_setadam import SETAdam

    model = _model("float64")
    plist = list(model.parameters())
    params0 = [_full(p) for p in plist]
    opt = ZeroRedundancyOptimizer(
        [{"params": plist, "layer": layer}], optimizer_class=SETAdam, lr=1e-2
    )
    owner: list[int] = [-1] * len(plist)
    for r, groups in enumerate(opt._partition_parameters()):
        for g in groups:
            for p in g["params"]:
                j = next(i for i, q in enumerate(plist) if q is p)
                owner[j] = r if owner[j] == -1 else -2  # -2: owned twice
    gen = torch.Generator().manual_seed(7)
    grads, params, colls = [], [], []
    for _ in range(steps):
        x = torch.randn(16, 13, generator=gen, dtype=torch.float64)
        y = torch.randn(16, 3, generator=gen, dtype=torch.float64)
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        grads.append([_full(p.grad) for p in plist])
        colls.append(count_collectives(torch, opt.step))
        params.append([_full(p) for p in plist])
        opt.zero_grad()
    return dict(
        params0=params0, grads=grads, params=params, owner=owner, collectives=colls,
        rank=dist.get_rank(),
    )  # fmt: skip


def _sharded(mesh: Any, a: Any) -> Any:
    from torch.distributed.tensor import Shard, distribute_tensor

    return distribute_tensor(a, mesh, [Shard(0)], src_data_rank=None)


def _error(fn: Any) -> str:
    try:
        fn()
    except (ValueError, RuntimeError) as exc:
        return str(exc)
    return ""


def disagreement() -> dict[str, Any]:
    """Ranks that disagree: a step counter bumped on rank 1 only, then a gradient rank 0 lacks;
    and ``fused=True`` on DTensors."""
    import torch
    import torch.distributed as dist

    from conformance.adapters.sharded_torch import mesh_for
    from conformance.ports.torch_setadam import SETAdam

    rank = dist.get_rank()
    mesh = mesh_for("cpu", dist.get_world_size())
    gen = torch.Generator().manual_seed(3)
    full = [torch.randn(8, 3, generator=gen, dtype=torch.float64),
            torch.randn(6, generator=gen, dtype=torch.float64)]  # fmt: skip

    def fresh() -> tuple[list[Any], Any]:
        ps = [_sharded(mesh, x.clone()).requires_grad_(True) for x in full]
        return ps, SETAdam(ps, lr=1e-2)

    def grads(ps: list[Any]) -> None:
        for p, x in zip(ps, full):
            p.grad = _sharded(mesh, x * 0.5)

    ps, opt = fresh()
    grads(ps)
    opt.step()
    if rank == 1:
        opt.state[ps[0]]["step"] += 1
    grads(ps)
    opt.step()
    drifted = ps[0].to_local()
    others = ps[1].to_local()

    ps, opt = fresh()
    grads(ps)
    opt.step()
    grads(ps)
    before = ps[1].to_local().clone()
    if rank == 0:
        ps[1].grad = None
    opt.step()
    b = ps[1].to_local()
    missing = bool(torch.equal(b, before)) if rank == 0 else bool(b.isnan().all())

    fps = [_sharded(mesh, x.clone()).requires_grad_(True) for x in full]
    fopt = SETAdam(fps, lr=1e-2, fused=True)
    grads(fps)
    return dict(
        drifted_nan=bool(drifted.isnan().all()),
        others_finite=bool(others.isfinite().all()),
        missing_grad_nan=missing,
        fused_error=_error(fopt.step),
    )


def layouts() -> dict[str, Any]:
    """Layouts SETAdam refuses (on 4 ranks): a 2-D mesh, a ``Partial`` parameter, a gradient laid
    out otherwise than its parameter. Each is refused before any collective, on every rank."""
    import torch
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Partial, Replicate, Shard, distribute_tensor

    from conformance.adapters.sharded_torch import mesh_for
    from conformance.ports.torch_setadam import SETAdam

    mesh = mesh_for("cpu", dist.get_world_size())
    mesh2 = init_device_mesh("cpu", (2, 2))
    x = torch.randn(8, 3, dtype=torch.float64)

    def step_with(p: Any, g: Any) -> None:
        p.grad = g
        SETAdam([p]).step()

    p2 = distribute_tensor(x, mesh2, [Shard(0), Replicate()], src_data_rank=None)
    pp = DTensor.from_local(x.clone(), mesh, [Partial()], run_check=False)
    ps = _sharded(mesh, x.clone())
    return dict(
        mesh_2d=_error(lambda: step_with(p2, p2.detach().clone())),
        partial=_error(lambda: step_with(pp, pp.detach().clone())),
        grad_layout=_error(
            lambda: step_with(ps, distribute_tensor(x, mesh, [Replicate()], src_data_rank=None))
        ),
    )


def group_layers(steps: int, foreach: bool) -> dict[str, Any]:
    """SETAdam with ``layer="group"`` on DTensors: a weight (7 rows) and its bias (7) as one layer
    spread over every rank, beside a 3-row tensor of its own group; fixed gradients."""
    import torch
    import torch.distributed as dist

    from conformance.adapters.sharded_torch import count_collectives, mesh_for
    from conformance.ports.torch_setadam import SETAdam

    mesh = mesh_for("cpu", dist.get_world_size())
    gen = torch.Generator().manual_seed(11)
    full = [torch.randn(s, generator=gen, dtype=torch.float64) for s in ((7, 5), (7,), (3, 2))]
    ps = [_sharded(mesh, x.clone()).requires_grad_(True) for x in full]
    opt = SETAdam(
        [{"params": ps[:2], "layer": "group"}, {"params": ps[2:]}], lr=1e-2, foreach=foreach
    )
    grads, params, colls = [], [], []
    for t in range(steps):
        g = [torch.randn(x.shape, generator=gen, dtype=torch.float64) * (t + 1) for x in full]
        for p, x in zip(ps, g):
            p.grad = _sharded(mesh, x)
        grads.append([x.numpy().copy() for x in g])
        colls.append(count_collectives(torch, opt.step))
        params.append([_full(p) for p in ps])
    return dict(
        params0=[x.numpy().copy() for x in full], grads=grads, params=params, collectives=colls
    )
