r"""An outside implementer's block-parallel numba SET-Adam, and the bugs such an author makes.

The author flattens each parameter and cuts it into blocks of ``BLOCK`` = $2^{16}$ entries, one
``prange`` item each. Pass 1 updates $m, v$ of a block and leaves that block's partials of the
new $v$: $\sum v$, $\sum v^2$ (float64) and $\min v$. The host combines the partials of a layer
(one layer per tensor) into $c_l = (\sum v)^2 / (d \sum v^2)$ (1 for an all-zero $v$) and
$\min_l v$. Pass 2 moves the parameters:

$$w = \sqrt{c_l v / (1-\beta_2^t) + \epsilon},\quad \tilde w = w - \tau \min_l w,\quad
\theta \leftarrow \theta\,\delta - \frac{\alpha}{1-\beta_1^t}\, m / \tilde w,$$

with $\min_l w = \sqrt{c_l \min_l v/(1-\beta_2^t) + \epsilon}$ (each operation is monotone, so
this is the minimum of the rounded $w$ exactly). State: ``self.state[p]["first"]``,
``["second"]`` and the counter ``["t"]`` (a Python int per parameter). Stages, when
``record_stages`` is set, one entry per parameter (NaN and a zero update where it had no
gradient): ``down_scaling`` $c_l v$,
``epsilon_embedding`` $w$, ``down_translating`` $\tilde w$, ``update``, the per-coordinate
values its pass 2 computes (no per-tensor $c$: in the buggy variants there is none).

``BlockSETAdam`` is the control. The planted bugs only show on a layer bigger than one block:

- ``BlockStatsSETAdam``: each block's partials are used as its layer's ($c$ and $\min v$ per
  block: "a block is a layer");
- ``BlockMinSETAdam``: the sums are combined per layer but $\min v$ is each block's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numba
import numpy as np
import torch
from torch import Tensor

BLOCK = 1 << 16
S1, S2, VMIN = range(3)


@numba.njit(parallel=True, cache=True)
def _moments(p: Any, g: Any, m: Any, v: Any, hyper: Any, l2: bool, parts: Any) -> None:
    """Pass 1 (``hyper`` = beta1, beta2, sign, weight decay): new m, v and per-block partials."""
    b1, b2, sign, wd = hyper[0], hyper[1], hyper[2], hyper[3]
    n = v.shape[0]
    for b in numba.prange(parts.shape[0]):
        lo = b * BLOCK
        hi = min(lo + BLOCK, n)
        s1 = 0.0
        s2 = 0.0
        lowest = np.inf
        for i in range(lo, hi):
            gi = sign * g[i]
            if l2:
                gi = gi + wd * p[i]
            m[i] = b1 * m[i] + (1.0 - b1) * gi
            vi = b2 * v[i] + (1.0 - b2) * gi * gi
            v[i] = vi
            s1 += vi
            s2 += vi * vi
            lowest = min(lowest, vi)
        parts[b, S1] = s1
        parts[b, S2] = s2
        parts[b, VMIN] = lowest


@numba.njit(parallel=True, cache=True)
def _update(p: Any, m: Any, v: Any, per_block: Any, hyper: Any, out: Any) -> None:
    """Pass 2: ``per_block[b]`` = (c, min w) of block b's layer; ``hyper`` = 1 - beta2^t, eps,
    tau, lr / (1 - beta1^t), decay factor; ``out`` rows = c v, w, w~ (written in every call)."""
    bc2, eps, tau, size, decay = hyper[0], hyper[1], hyper[2], hyper[3], hyper[4]
    n = v.shape[0]
    for b in numba.prange(per_block.shape[0]):
        c, wmin = per_block[b, 0], per_block[b, 1]
        for i in range(b * BLOCK, min((b + 1) * BLOCK, n)):
            vs = c * v[i]
            w = np.sqrt(vs / bc2 + eps)
            wt = w - tau * wmin
            out[0, i] = vs
            out[1, i] = w
            out[2, i] = wt
            p[i] = p[i] * decay - size * m[i] / wt


class BlockSETAdam(torch.optim.Optimizer):
    """Block-parallel numba SET-Adam on CPU float64/float32 tensors (control: correct)."""

    #: the planted mistakes (False in the control)
    STATS_PER_BLOCK = False
    MIN_PER_BLOCK = False

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        tau: float = 0.5,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, tau=tau,
            decoupled_weight_decay=decoupled_weight_decay, maximize=maximize,
        )  # fmt: skip
        super().__init__(params, defaults)
        self.record_stages = False
        self.last_stages: dict[str, list[Tensor]] | None = None

    def _layer_scalars(self, parts: np.ndarray, n: int, bc2: float, eps: float) -> np.ndarray:
        """(c, min w) per block, from the blocks' partials of one layer of ``n`` entries."""
        sizes = np.minimum(BLOCK, n - BLOCK * np.arange(parts.shape[0])).astype(np.float64)
        s1, s2, vmin = parts[:, S1].sum(), parts[:, S2].sum(), parts[:, VMIN].min()
        c = np.full(parts.shape[0], s1 * s1 / (n * s2) if s2 > 0 else 1.0)
        low = np.full(parts.shape[0], vmin)
        if self.STATS_PER_BLOCK:  # the planted mistake: a block's partials taken as its layer's
            with np.errstate(invalid="ignore", divide="ignore"):
                c = np.where(parts[:, S2] > 0, parts[:, S1] ** 2 / (sizes * parts[:, S2]), 1.0)
        if self.STATS_PER_BLOCK or self.MIN_PER_BLOCK:
            low = parts[:, VMIN]
        return np.stack([c, np.sqrt(c * low / bc2 + eps)], axis=1)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        record = self.record_stages
        rec: dict[str, list[Tensor]] = {
            k: [] for k in ("down_scaling", "epsilon_embedding", "down_translating", "update")
        }
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    got = self._step_one(p, group, record)
                elif record:  # not stepped: NaN stages, no update
                    nan = torch.full_like(p, float("nan"))
                    got = [nan, nan, nan, torch.zeros_like(p)]
                if record:
                    for k, t in zip(rec, got, strict=True):
                        rec[k].append(t)
        self.last_stages = rec if record else None
        return loss

    def _step_one(self, p: Tensor, group: dict[str, Any], record: bool) -> list[Tensor]:
        st = self.state[p]
        if not st:
            st["first"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
            st["second"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
            st["t"] = 0
        st["t"] += 1
        t = st["t"]
        b1, b2 = (float(b) for b in group["betas"])
        lr, wd = float(group["lr"]), float(group["weight_decay"])
        l2 = wd != 0 and not group["decoupled_weight_decay"]
        decay = 1.0 - lr * wd if wd != 0 and not l2 else 1.0
        bc1, bc2 = 1.0 - b1**t, 1.0 - b2**t
        work = p.detach().contiguous()  # p itself where it is contiguous
        before = work.clone() if record else None
        x = work.view(-1).numpy()
        grad = p.grad.detach().contiguous().view(-1).numpy()  # type: ignore[union-attr]
        m, v = st["first"].view(-1).numpy(), st["second"].view(-1).numpy()
        n = x.shape[0]
        dt = x.dtype
        out = np.zeros((3, n), dtype=dt)
        if n > 0:
            parts = np.zeros((-(-n // BLOCK), 3))
            sign = -1.0 if group["maximize"] else 1.0
            _moments(x, grad, m, v, np.array([b1, b2, sign, wd], dtype=dt), l2, parts)
            per_block = self._layer_scalars(parts, n, bc2, float(group["eps"])).astype(dt)
            hyper = np.array([bc2, group["eps"], group["tau"], lr / bc1, decay], dtype=dt)
            _update(x, m, v, per_block, hyper, out)
        if work.data_ptr() != p.data_ptr():
            p.copy_(work)
        if not record:
            return []
        assert before is not None
        return [*(torch.from_numpy(r).view_as(p) for r in out), work - before]


class BlockStatsSETAdam(BlockSETAdam):
    STATS_PER_BLOCK = True


class BlockMinSETAdam(BlockSETAdam):
    MIN_PER_BLOCK = True
