"""The stand-alone reproducer script of a shrunk case: NumPy, ``setadam_ref`` and the framework.

The script regenerates the case's inputs (the generator's source is copied in), runs the
reference and the target free-running for the failing step's horizon, and compares the failing
array at that step against the budget the harness's tolerance model gave each coordinate there
(embedded as hex floats: the script imports nothing of ``conformance``). It prints the port's and
the reference's values at the first coordinate over budget and exits 1; 0 when nothing is over.
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
    opt = TARGET([{"params": tensors}], **KWARGS)
    for g in grads[:steps]:
        for p, gi in zip(tensors, g):
            p.grad = torch.tensor(rounded(gi), dtype=TORCH_DTYPE).reshape(p.shape)
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


def port_params(params0, grads, steps):
    params = [jnp.asarray(rounded(p), dtype=JAX_DTYPE) for p in params0]
    tx = TARGET(**KWARGS)
    state = tx.init(params)
    for g in grads[:steps]:
        gs = [jnp.asarray(rounded(gi), dtype=JAX_DTYPE) for gi in g]
        updates, state = tx.update(gs, state, params)
        params = optax.apply_updates(params, updates)
    return [np.asarray(p, dtype=np.float64) for p in params]
'''

_MAIN = """

def main():
    params0, grads = make_inputs(CASE["shapes"], CASE["kinds"], CASE["scales"], CASE["steps"], CASE["seed"])
    cfg = CONFIG_CLASS(**CONFIG)
    p = [rounded(a) for a in params0]
    state = setadam_ref.init(p, cfg)
    for g in grads[:STEP]:
        p, state, _ = setadam_ref.step(p, [rounded(gi) for gi in g], state, cfg)
    ref = np.asarray(p[ARRAY], dtype=np.float64).reshape(-1)
    port = np.asarray(port_params(params0, grads, STEP)[ARRAY], dtype=np.float64).reshape(-1)
    budget = np.array([float.fromhex(h) for h in BUDGET])
    with np.errstate(invalid="ignore"):
        over = ~(np.abs(port - ref) <= budget)
    print(f"case: {CASE_TEXT}")
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
    config: dict[str, Any],
    kwargs: dict[str, Any],
    step: int,
    array: int,
    budget: np.ndarray,
) -> str:
    """The reproducer's source: free-run ``target`` to ``step``, judge ``array`` there."""
    module, attr = target.split(":", 1)
    cls = "AdamConfig" if case.algorithm == "adam" else "SETAdamConfig"
    gen = inspect.getsource(_gen.make_inputs)
    port = _TORCH_PORT if framework == "torch" else _JAX_PORT
    head = [
        f'"""Reproducer of a fuzz failure of {target} ({framework}, {case.algorithm}, {dtype}).',
        "",
        "Written by `setadam-conformance fuzz`; needs only numpy, setadam_ref and the framework.",
        'Exit status 1: the port is over the tolerance-model budget (FAIL); 0: not reproduced."""',
        "",
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
        f"CONFIG = {config!r}",
        f"KWARGS = {kwargs!r}",
        f"STEP = {step}",
        f"ARRAY = {array}",
        "# the harness's per-coordinate budget of |port - reference| for that array at that step",
        f"BUDGET = {[float(b).hex() for b in np.asarray(budget).reshape(-1)]!r}",
        "",
        "",
    ]
    return "\n".join(head) + gen + "\n" + port + _MAIN
