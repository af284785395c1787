"""The dtype conventions of the torch port: the compute dtype and the state dtype of a parameter.

* compute dtype: float64 for float64 parameters, float32 for every other floating dtype. ``w``,
  the translation and the step are computed in it; a 16-bit parameter is rounded once, at the end.
* state dtype: ``exp_avg`` / ``exp_avg_sq`` keep the parameter's dtype, as in ``torch.optim.Adam``
  (each moment update rounds once to it), except that ``fused=True`` keeps float32 state for
  bfloat16 parameters (the CUDA kernels' contract).
"""

from __future__ import annotations

import torch


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every other floating dtype is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def state_dtype(dtype: torch.dtype, *, fused: bool) -> torch.dtype:
    """The dtype of the moments of a parameter of ``dtype``."""
    return torch.float32 if fused and dtype == torch.bfloat16 else dtype
