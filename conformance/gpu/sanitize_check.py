"""A small workload of the CUDA kernels for compute-sanitizer (memcheck, racecheck).

``compute-sanitizer --tool memcheck --error-exitcode 3 python3 -m conformance.gpu.sanitize_check``
runs SET-Adam (float32 and bfloat16, l2 and decoupled weight decay, grouped layers, an unaligned
view for the scalar path, an empty tensor) and Adam for a few steps each, then checks that the
results are finite.  Exit status 0 when it ran and the results are finite.
"""

from __future__ import annotations

import sys


def main() -> int:
    import torch

    from conformance.ports.cuda.torch_fused import fused_adam_, fused_setadam_

    if not torch.cuda.is_available():
        print("sanitize_check: no CUDA device", file=sys.stderr)
        return 2
    dev = "cuda"
    torch.manual_seed(0)
    shapes = [(5,), (1024,), (0,), (300, 7), (70000,)]
    for dtype in (torch.float32, torch.bfloat16):
        for wd, decoupled in ((0.1, False), (0.1, True)):
            p = [torch.randn(s, device=dev).to(dtype) for s in shapes]
            base = torch.randn(1001, device=dev).to(dtype)
            p.append(base[1:])
            g = [torch.randn_like(x) * 1e-3 for x in p]
            m = [torch.zeros(x.shape, device=dev) for x in p]
            v = [torch.zeros(x.shape, device=dev) for x in p]
            layer_of = [0, 0, 1, 2, 3, 3]
            st = torch.empty(4, 4, dtype=torch.float64, device=dev)
            for t in (1, 2, 3):
                fused_setadam_(p, g, m, v, layer_of, step=t, lr=1e-3, beta1=0.9, beta2=0.999,
                               eps=1e-8, tau=0.5, weight_decay=wd, decoupled=decoupled,
                               maximize=False, stats_out=st)  # fmt: skip
            for t in (1, 2):
                fused_adam_(p, g, m, v, step=t, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                            weight_decay=wd, decoupled=decoupled, maximize=True)  # fmt: skip
            torch.cuda.synchronize()
            ok = all(bool(torch.isfinite(x.float()).all()) for x in p + m + v)
            print(f"sanitize_check {dtype} wd={wd} decoupled={decoupled}: finite={ok}")
            if not ok:
                return 1
    print("sanitize_check: done")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
