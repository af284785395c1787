r"""SET-Adam for PyTorch: ``SETAdam(torch.optim.Optimizer)`` and ``setadam(...)``, written from the
mathematics.

One step, for every layer $l$ (by default one layer per parameter tensor):

$$
\begin{aligned}
m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \quad\text{(state keeps } v_t \text{ unscaled)}\\
c_l &= \frac{(\sum_i v_{l,i})^2}{d_l \sum_i v_{l,i}^2}, \qquad
w = \sqrt{\frac{c_l v}{1-\beta_2^t} + \epsilon}, \qquad
\tilde w = w - \tau \min_l w\\
\theta_t &= \theta_{t-1} - \frac{\eta}{1-\beta_1^t}\,\frac{m_t}{\tilde w}
\end{aligned}
$$

Modules, one job each:

* :mod:`.optimizer`: the ``torch.optim.Optimizer`` (groups, state, path choice, stage record);
* :mod:`.functional`: ``setadam(...)`` on tensor lists and the table of paths;
* :mod:`.single_tensor`, :mod:`.multi_tensor`, :mod:`.fused`: the three paths (for-loop,
  foreach, CUDA kernels of ``conformance.ports.cuda.torch_fused``);
* :mod:`.layer_stats`: the layer statistics shared by the first two, as device tensors (partial
  sums per tensor, then a combine step per layer);
* :mod:`.sharded`, :mod:`.shard_stats`: the sharded variants of the first two paths for DTensor
  parameters (local shards; the partials exchanged across ranks in one collective per group);
* :mod:`.hyper`: the hyperparameter record every path takes, and its validation;
* :mod:`.dtypes`, :mod:`.stages`: the dtype conventions and the stage record.

``foreach=None`` follows torch's default rule: foreach when every parameter of a group is on a CUDA
device, the for-loop otherwise. Neither the for-loop nor the foreach path reads a device value back
to the host, and on CPU they agree bit for bit. Numerics (details in :mod:`.layer_stats`):

* Layer statistics accumulate in float64 on exactly power-of-two-scaled entries: finite $c_l$
  in $[1/d_l, 1]$ for any finite $v$ of any dtype; $c_l = 1$ for an all-zero layer.
* $\min_l w$ comes from $\min_l v$ ($w$ is increasing in $v$), rounded as the element-wise
  kernels round $w$. torch's vectorised CPU ``sqrt`` is not always correctly rounded, so it may
  differ from the minimum of the $w$ tensor by an ulp.
* Low-precision parameters (bfloat16, float16) keep ``exp_avg``/``exp_avg_sq`` in their dtype as
  ``torch.optim.Adam`` does; $w$, the translation and the step are computed in float32 and the
  parameter is rounded once, so float16 with ``eps = 1e-8`` does not underflow ``eps`` to zero.
  ``fused=True`` keeps float32 state for bfloat16 parameters.
* A NaN or infinity in one gradient entry poisons that entry's whole layer ($c_l$ and
  $\min_l w$ are layer-wide); nothing is raised (torch's convention).

State per parameter: ``step`` (float32 0-d CPU tensor), ``exp_avg``, ``exp_avg_sq``. Parameters
whose ``grad`` is ``None`` are skipped and do not count in their layer; zero-size tensors take
part but change nothing.

Stage recording (for the conformance harness): set ``opt.record_stages = True``; after each step
``opt.last_stages`` maps the names of ``STAGE_KEYS`` (``setadam_ref.stage_names.RECORDABLE``) to
one tensor per parameter in ``param_groups`` order (see :mod:`.stages`), or is ``None`` when a
group ran the fused path, which records none. A skipped parameter gets NaN stage tensors,
``cos2 = NaN`` and a zero update.
"""

from __future__ import annotations

from .functional import PATHS, records_stages, setadam
from .hyper import Hyper
from .optimizer import SETAdam
from .stages import STAGE_KEYS, Stages

__all__ = ["PATHS", "STAGE_KEYS", "Hyper", "SETAdam", "Stages", "records_stages", "setadam"]
