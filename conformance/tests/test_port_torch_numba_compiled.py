"""``torch.compile(opt.step)`` of our numba path (``SETAdam(compiled="numba")``): the step users
compile runs the numba kernels eagerly behind a graph break (``torch_setadam.eager_only``).

Without the break dynamo traced into numba's dispatcher and the first compiled step raised inside
numba's parfor lowering (``KeyError: 'parfor_index...'``, the harness's ``compiled`` scenario
failed with an exception). With it: the compiled step is bitwise the eager step on the
``compiled`` scenario's inputs in both dtypes, the only graph with operations is step 1's state
initialisation, nothing compiles after step 1 under a ``LambdaLR`` (a new lr every step), and the
harness's ``compiled`` scenario passes the port with its budgets unchanged. Skipped, with the
reason, where numba is not installed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("numba", reason="numba (the optional extra setadam-ref[numba]) not installed")

from torch._dynamo.testing import CompileCounterWithBackend  # noqa: E402
from torch._dynamo.utils import counters  # noqa: E402

from conformance import scenarios as S  # noqa: E402
from conformance.adapters import registry  # noqa: E402
from conformance.ports.torch_setadam import SETAdam  # noqa: E402
from conformance.runner import check_port  # noqa: E402

STEPS = 10


def _run(
    dtype: Any, step_of: Any, counter: Any = None
) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """The ``compiled`` scenario's parameters and gradients (cycled to ``STEPS``) through
    ``step_of(opt)`` under a ``LambdaLR`` (a new lr every step); the final parameters and, with
    a ``counter``, the graphs it had compiled and the frames dynamo had compiled after each step."""
    sc = S.get("compiled")
    prob = sc.problem()
    assert prob.grads is not None
    ps = [torch.tensor(a, dtype=dtype).requires_grad_() for a in prob.params0]
    opt = SETAdam(ps, **sc.hyper, compiled="numba")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0 / (1 + k))
    step = step_of(opt)
    graphs: list[tuple[int, int]] = []
    for t in range(STEPS):
        for p, g in zip(ps, prob.grads[t % prob.steps], strict=True):
            p.grad = torch.tensor(g, dtype=dtype)
        step()
        sched.step()
        if counter is not None:
            graphs.append((counter.frame_count, counters["frames"]["ok"]))
    return [p.detach().numpy().copy() for p in ps], graphs


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_compiled_step_is_bitwise_the_eager_step_and_compiles_once(dtype: str) -> None:
    import torch._dynamo

    dt = getattr(torch, dtype)
    torch._dynamo.reset()
    counters.clear()
    counter = CompileCounterWithBackend("inductor")
    compiled, graphs = _run(dt, lambda o: torch.compile(o.step, backend=counter), counter)
    eager, _ = _run(dt, lambda o: o.step)
    for a, b in zip(compiled, eager, strict=True):
        np.testing.assert_array_equal(a, b, strict=True)
    # step 1's graph initialises the state (step, exp_avg, exp_avg_sq per parameter); no later
    # step compiles one. Step 2 re-traces the few frames that guarded on the empty state (no
    # graph in them); from step 3 on dynamo compiles nothing, whatever the lr
    assert [n for n, _ in graphs] == [1] * STEPS, graphs
    assert len({f for _, f in graphs[1:]}) == 1, graphs
    assert counter.op_count == 3 * len(compiled), counter.op_count


def test_the_harness_compiled_scenario_passes_the_numba_port() -> None:
    specs = registry.available_ports("cpu", None, ["ours.torch.SETAdam[[]numba[]]*"])[0]
    (spec,) = [s for s in specs if s.dtype == "float32"]
    r = check_port(spec, scenarios=["compiled"], quick=True, diagnose=False)
    assert [s.status for s in r.scenarios] == ["pass"], r.failures
