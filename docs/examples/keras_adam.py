"""keras 3 Adam / AdamW (torch backend) behind torch's optimizer interface, for the harness.

keras optimizers step keras Variables, not torch parameters: ``KerasAdam`` keeps one Variable per
parameter, copies the parameters in, lets keras apply the gradients, and copies the result back.
keras' Adam is TensorFlow's form (eps added to the unscaled sqrt(v), the bias corrections folded
into the step size), its weight decay is decoupled and its default epsilon 1e-7; check it with

    setadam-conformance check keras_adam:KerasAdam --framework torch --algorithm adam \
        --dtype float32 --reference-hyper eps_mode=tf --hyper eps=1e-7 \
        --weight-decay-mode decoupled
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported

import keras
import torch


class KerasAdam(torch.optim.Optimizer):
    """``keras.optimizers.Adam`` (``AdamW`` when ``weight_decay`` > 0) as a torch optimizer."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-7, weight_decay=0.0,
                 amsgrad=False):  # fmt: skip
        super().__init__(params, {"lr": lr})
        if keras.backend.backend() != "torch":
            raise RuntimeError("KerasAdam needs KERAS_BACKEND=torch")
        kw = dict(learning_rate=lr, beta_1=betas[0], beta_2=betas[1], epsilon=eps, amsgrad=amsgrad)
        if weight_decay:
            self.keras = keras.optimizers.AdamW(weight_decay=weight_decay, **kw)
        else:
            self.keras = keras.optimizers.Adam(**kw)
        self.variables = None

    @torch.no_grad()
    def step(self, closure=None):
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not params:
            return
        if self.variables is None:
            dtype = str(params[0].dtype).removeprefix("torch.")
            self.variables = [keras.Variable(p.detach().clone(), dtype=dtype) for p in params]
            self.keras.build(self.variables)
        for var, p in zip(self.variables, params):
            var.assign(p.detach())
        self.keras.apply([p.grad.detach().clone() for p in params], self.variables)
        for var, p in zip(self.variables, params):
            p.copy_(var.value)
