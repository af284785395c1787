"""The stand-alone reproducer script of a shrunk case: NumPy, ``setadam_ref`` and the framework.

The script regenerates the case's inputs (the generator's source is copied in), runs the
reference and the target free-running for the failing step's horizon (with the case's param
groups, lr schedule and absent gradients: the reference steps each array on its own, with its
group's config at the step's lr and its own step count, as :mod:`conformance.contract_reference`
does for layers of one array; a JAX target as the JAX adapter builds it: an
``optax.multi_transform`` over the groups, the schedule as a function of optax's count), with the
keyword arguments the harness's worker built the target with (``artifacts.constructed``: the
fields its adapter adds from the target's signature, ``amsgrad``, ``maximize``, ... included),
and compares the failing array at that step against the budget the harness's tolerance model
gave each coordinate there (embedded as hex floats: the script imports nothing of
``conformance``). It prints those keyword arguments, the port's and the reference's values at
the first coordinate over budget and exits 1; 0 when nothing is over.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from . import _gen
from .cases import Case

_TORCH_PORT = '''
import torch

TORCH_DTYPE = getattr(torch, DTYPE)


def rounded(a):
    """``a`` rounded to the port's dtype, as float64 (what the harness feeds both sides)."""
    return torch.tensor(a, dtype=torch.float64).to(TORCH_DTYPE).double().numpy()


def port_params(params0, grads, steps):
    tensors = [torch.tensor(rounded(p), dtype=TORCH_DTYPE).requires_grad_(True) for p in params0]
    groups = [{"params": [tensors[i] for i in arrays], **kw} for arrays, _cfg, kw in GROUPS]
    opt = TARGET(groups, **KWARGS)
    lr0 = [g.get("lr") for g in opt.param_groups]
    for t, g in enumerate(grads[:steps], start=1):
        for group, lr in zip(opt.param_groups, lr0):
            if lr is not None:
                group["lr"] = lr * FACTORS[t - 1]
        for i, (p, gi) in enumerate(zip(tensors, g)):
            ok = has_grad(ABSENT[i], t)
            p.grad = torch.tensor(rounded(gi), dtype=TORCH_DTYPE).reshape(p.shape) if ok else None
        opt.step()
    return [p.detach().double().numpy() for p in tensors]
'''

_JAX_PORT = '''
import jax
import jax.numpy as jnp
import optax

jax.config.update("jax_enable_x64", True)
JAX_DTYPE = jnp.dtype(DTYPE)


def rounded(a):
    """``a`` rounded to the port's dtype, as float64 (what the harness feeds both sides)."""
    return np.asarray(jnp.asarray(np.asarray(a, dtype=np.float64)).astype(JAX_DTYPE), dtype=np.float64)


def transformation():
    """The target as the harness's JAX adapter builds it: one transformation, or for param groups
    an ``optax.multi_transform`` (a label per group, ``set_to_zero`` for frozen arrays), the lr
    schedule as ``learning_rate`` = a function of optax's count."""
    if not CONTRACT:
        return TARGET(**KWARGS)
    f = jnp.asarray(FACTORS)

    def make(kw):
        lr = kw["learning_rate"]
        if SCHEDULED:
            lr = (lambda base: lambda count: base * f[jnp.minimum(count, f.shape[0] - 1)])(lr)
        return TARGET(**{**kw, "learning_rate": lr})

    if len(GROUPS) == 1 and not FROZEN:
        return make(GROUPS[0][2])
    txs = {f"group{k}": make(kw) for k, (arrays, _c, kw) in enumerate(GROUPS) if set(arrays) - set(FROZEN)}
    txs["frozen"] = optax.set_to_zero()
    labels = ["frozen"] * sum(len(arrays) for arrays, _c, _kw in GROUPS)
    for k, (arrays, _c, _kw) in enumerate(GROUPS):
        for i in arrays:
            labels[i] = "frozen" if i in FROZEN else f"group{k}"
    return optax.multi_transform(txs, labels)


def port_params(params0, grads, steps):
    params = [jnp.asarray(rounded(p), dtype=JAX_DTYPE) for p in params0]
    tx = transformation()
    state = tx.init(params)
    for t, g in enumerate(grads[:steps], start=1):
        # an absent gradient is a zero one here (optax has none), as the adapter feeds it
        gs = [jnp.asarray(rounded(gi) if has_grad(ABSENT[i], t) else np.zeros(np.shape(gi)),
                          dtype=JAX_DTYPE) for i, gi in enumerate(g)]
        updates, state = tx.update(gs, state, params)
        params = optax.apply_updates(params, updates)
    return [np.asarray(p, dtype=np.float64) for p in params]
'''

_MAIN = """

def main():
    params0, grads = make_inputs(CASE["shapes"], CASE["kinds"], CASE["scales"], CASE["steps"], CASE["seed"])
    p = [rounded(a) for a in params0]
    cfgs = {i: CONFIG_CLASS(**cfg) for arrays, cfg, _kw in GROUPS for i in arrays}
    states = [setadam_ref.init([p[i]], cfgs[i]) for i in range(len(p))]
    for t, g in enumerate(grads[:STEP], start=1):
        for i, gi in enumerate(g):  # each array is its own layer: one call per array
            if has_grad(ABSENT[i], t):
                cfg = dataclasses.replace(cfgs[i], lr=cfgs[i].lr * FACTORS[t - 1])
                out, states[i], _ = setadam_ref.step([p[i]], [rounded(gi)], states[i], cfg)
                p[i] = out[0]
    ref = np.asarray(p[ARRAY], dtype=np.float64).reshape(-1)
    port = np.asarray(port_params(params0, grads, STEP)[ARRAY], dtype=np.float64).reshape(-1)
    budget = np.array([float.fromhex(h) for h in BUDGET])
    with np.errstate(invalid="ignore"):
        over = ~(np.abs(port - ref) <= budget)
    print(f"case: {CASE_TEXT}")
    print(f"target built with {KWARGS!r} and per group {[kw for _a, _c, kw in GROUPS]!r}")
    if not over.any():
        print(f"no coordinate of array {ARRAY} over budget at step {STEP}: not reproduced")
        return 0
    k = int(np.argmax(over))
    index = np.unravel_index(k, CASE["shapes"][ARRAY]) if CASE["shapes"][ARRAY] else ()
    print(f"step {STEP}, array {ARRAY}, index {list(map(int, index))}:")
    print(f"  port      {float(port[k])!r}")
    print(f"  reference {float(ref[k])!r}")
    print(f"  |diff| = {abs(port[k] - ref[k]):.6g}, budget {budget[k]:.6g} (tolerance model)")
    print(f"{int(over.sum())} of {over.size} coordinates over budget: FAIL")
    return 1


if __name__ == "__main__":
    sys.exit(main())
"""


def script(
    case: Case,
    framework: str,
    target: str,
    dtype: str,
    groups: list[tuple[list[int], dict[str, Any], dict[str, Any]]],
    kwargs: dict[str, Any],
    step: int,
    array: int,
    budget: np.ndarray,
    frozen: tuple[int, ...] = (),
) -> str:
    """The reproducer's source: free-run ``target`` to ``step``, judge ``array`` there;
    ``groups``: per param group its arrays, reference config fields and the target's group
    options (one group of every array for a plain case); ``frozen``: the arrays without any
    gradient (a JAX target gives them ``optax.set_to_zero``)."""
    module, attr = target.split(":", 1)
    cls = "AdamConfig" if case.algorithm == "adam" else "SETAdamConfig"
    gen = "\n\n".join(
        inspect.getsource(f) for f in (_gen.make_inputs, _gen.lr_factors, _gen.has_grad)
    )
    factors = _gen.lr_factors(case.schedule, case.steps) if case.schedule else [1.0] * case.steps
    absent = list(case.absent) or [0] * len(case.shapes)
    port = _TORCH_PORT if framework == "torch" else _JAX_PORT
    head = [
        f'"""Reproducer of a fuzz failure of {target} ({framework}, {case.algorithm}, {dtype}).',
        "",
        "Written by `setadam-conformance fuzz`; needs only numpy, setadam_ref and the framework.",
        'Exit status 1: the port is over the tolerance-model budget (FAIL); 0: not reproduced."""',
        "",
        "import dataclasses",
        "import sys",
        "",
        "import numpy as np",
        "",
        "import setadam_ref",
        f"from {module} import {attr} as TARGET",
        "",
        f"DTYPE = {dtype!r}",
        f"CASE = {case.as_json()!r}",
        f"CASE_TEXT = {case.describe()!r}",
        f"CONFIG_CLASS = setadam_ref.{cls}",
        "# per param group: its arrays, the reference config, the target's group options",
        f"GROUPS = {groups!r}",
        f"KWARGS = {kwargs!r}",
        f"FACTORS = {factors!r}  # step t uses lr * FACTORS[t - 1]",
        f"ABSENT = {absent!r}  # per array its gradient absence period (has_grad)",
        f"CONTRACT = {case.contract!r}  # groups, an lr schedule or absent gradients",
        f"SCHEDULED = {bool(case.schedule)!r}",
        f"FROZEN = {list(frozen)!r}  # arrays without gradient at every step",
        f"STEP = {step}",
        f"ARRAY = {array}",
        "# the harness's per-coordinate budget of |port - reference| for that array at that step",
        f"BUDGET = {[float(b).hex() for b in np.asarray(budget).reshape(-1)]!r}",
        "",
        "",
    ]
    return "\n".join(head) + gen + "\n" + port + _MAIN
