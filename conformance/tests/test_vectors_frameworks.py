"""torch.optim.Adam / AdamW, driven through the golden vectors' files alone, pass `vectors check`.

The vectors claim that the reference's AdamConfig reproduces torch.optim's conventions (eps
outside the root, l2 or decoupled weight decay, torch AMSGrad, maximize). This test reads the
canonical manifest as an outside user would, runs torch's optimizers on every Adam vector they
can express (not eps_root, not optax's AMSGrad), writes the documented output format and checks
it in every dtype against that dtype's budgets (vectors not applicable to a dtype are skipped).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from conformance.vectors import CANONICAL_DIR
from conformance.vectors.check import check

torch = pytest.importorskip("torch")

DTYPES = ("float64", "float32", "bfloat16", "float16")


def _expressible(vec: dict[str, Any]) -> bool:
    cfg = vec["config"]
    if vec["algorithm"] != "adam" or float.fromhex(cfg["eps_root"]) != 0.0:
        return False
    if cfg["amsgrad"] and cfg["amsgrad_mode"] != "torch":
        return False
    return True


def _tensors(arrays: list[list[str]], shapes: list[list[int]], dtype: Any) -> list[Any]:
    return [
        torch.tensor([float.fromhex(x) for x in a], dtype=torch.float64).reshape(s).to(dtype)
        for a, s in zip(arrays, shapes, strict=True)
    ]


def _run_torch(vec: dict[str, Any], dtype_name: str) -> str:
    dtype = getattr(torch, dtype_name)
    cfg = vec["config"]
    h = float.fromhex
    shapes = vec["shapes"]
    params = [p.requires_grad_(True) for p in _tensors(vec["inputs"]["params"], shapes, dtype)]
    kwargs = dict(
        lr=h(cfg["lr"]),
        betas=(h(cfg["beta1"]), h(cfg["beta2"])),
        eps=h(cfg["eps"]),
        weight_decay=h(cfg["weight_decay"]),
        amsgrad=cfg["amsgrad"],
        maximize=cfg["maximize"],
        foreach=False,
    )
    decoupled = cfg["weight_decay_mode"] == "decoupled"
    opt = (torch.optim.AdamW if decoupled else torch.optim.Adam)(params, **kwargs)
    st0 = vec["inputs"]["initial_state"]
    if st0["step"]:
        ms = _tensors(st0["m"], shapes, dtype)
        vs = _tensors(st0["v"], shapes, dtype)
        vmaxs = _tensors(st0["vmax"], shapes, dtype) if st0["vmax"] is not None else None
        for i, p in enumerate(params):
            state = {
                "step": torch.tensor(float(st0["step"])),
                "exp_avg": ms[i],
                "exp_avg_sq": vs[i],
            }
            if vmaxs is not None:
                state["max_exp_avg_sq"] = vmaxs[i]
            opt.state[p] = state
    lines = ["setadam-output 1", f"id {vec['id']}", f"dtype {dtype_name}"]
    for k, grads in enumerate(vec["inputs"]["grads"], 1):
        for p, g in zip(params, _tensors(grads, shapes, dtype), strict=True):
            p.grad = g
        opt.step()
        t = st0["step"] + k
        for i, p in enumerate(params):
            flat = p.detach().to(torch.float64).reshape(-1).tolist()
            lines.append(" ".join([f"param {t} {i} {len(flat)}", *(x.hex() for x in flat)]))
    lines.append("end")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("dtype_name", DTYPES)
def test_torch_adam_passes_the_adam_vectors(tmp_path: Path, dtype_name: str) -> None:
    manifest = json.loads((CANONICAL_DIR / "manifest.json").read_text())
    chosen = [v for v in manifest["vectors"] if _expressible(v)]
    assert len(chosen) >= 10
    for vec in chosen:
        (tmp_path / f"{vec['id']}.txt").write_text(_run_torch(vec, dtype_name))
    buf = io.StringIO()
    rc = check(CANONICAL_DIR, tmp_path, vectors=[v["id"] for v in chosen], stream=buf)
    assert rc == 0, buf.getvalue()


def _run_ours(vec: dict[str, Any], dtype_name: str, foreach: bool) -> str:
    """Our torch SETAdam (conformance/ports/torch_setadam.py): one param group per layer."""
    from conformance.ports.torch_setadam import SETAdam

    dtype = getattr(torch, dtype_name)
    cfg = vec["config"]
    h = float.fromhex
    shapes = vec["shapes"]
    params = [p.requires_grad_(True) for p in _tensors(vec["inputs"]["params"], shapes, dtype)]
    groups = [{"params": [params[i] for i in layer], "layer": "group"} for layer in vec["layers"]]
    opt = SETAdam(
        groups,
        lr=h(cfg["lr"]),
        betas=(h(cfg["beta1"]), h(cfg["beta2"])),
        eps=h(cfg["eps"]),
        weight_decay=h(cfg["weight_decay"]),
        tau=h(cfg["tau"]),
        decoupled_weight_decay=cfg["weight_decay_mode"] == "decoupled",
        maximize=cfg["maximize"],
        foreach=foreach,
    )
    st0 = vec["inputs"]["initial_state"]
    if st0["step"]:
        ms = _tensors(st0["m"], shapes, dtype)
        vs = _tensors(st0["v"], shapes, dtype)
        for i, p in enumerate(params):
            opt.state[p] = {
                "step": torch.tensor(float(st0["step"])),
                "exp_avg": ms[i],
                "exp_avg_sq": vs[i],
            }
    lines = ["setadam-output 1", f"id {vec['id']}", f"dtype {dtype_name}"]
    for k, grads in enumerate(vec["inputs"]["grads"], 1):
        for p, g in zip(params, _tensors(grads, shapes, dtype), strict=True):
            p.grad = g
        opt.step()
        t = st0["step"] + k
        for i, p in enumerate(params):
            flat = p.detach().to(torch.float64).reshape(-1).tolist()
            lines.append(" ".join([f"param {t} {i} {len(flat)}", *(x.hex() for x in flat)]))
    lines.append("end")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("foreach", [False, True], ids=["single", "foreach"])
def test_our_torch_setadam_passes_the_setadam_vectors(
    tmp_path: Path, dtype_name: str, foreach: bool
) -> None:
    pytest.importorskip("conformance.ports.torch_setadam")
    manifest = json.loads((CANONICAL_DIR / "manifest.json").read_text())
    chosen = [v for v in manifest["vectors"] if v["algorithm"] == "setadam"]
    for vec in chosen:
        (tmp_path / f"{vec['id']}.txt").write_text(_run_ours(vec, dtype_name, foreach))
    buf = io.StringIO()
    rc = check(CANONICAL_DIR, tmp_path, vectors=[v["id"] for v in chosen], stream=buf)
    assert rc == 0, buf.getvalue()
