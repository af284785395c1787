"""Checkpoint round trips as users write them: bytes out, bytes back in, a fresh optimizer.

torch: ``torch.save(opt.state_dict(), buffer)`` then ``torch.load(buffer)`` (torch's default
``weights_only`` loader) into ``load_state_dict`` of an optimizer built afresh over fresh leaf
tensors holding the same values. JAX: the state pytree's leaves through ``numpy.savez`` /
``numpy.load``, unflattened into the tree structure of a fresh ``init``. Whatever does not
survive the trip is the port's to lose; what the harness cannot do at all (no ``state_dict``,
a load that raises, a tree that does not match) is ``NotImplementedError`` with the reason, and
the ``resume`` scenario is skipped with it.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from ..session import describe_exception


def torch_reload(old: Any, fresh: Any) -> None:
    """Load ``old``'s ``state_dict()``, through ``torch.save``/``torch.load`` bytes, into ``fresh``."""
    import torch

    for obj, attr in ((old, "state_dict"), (fresh, "load_state_dict")):
        if not callable(getattr(obj, attr, None)):
            raise NotImplementedError(f"the optimizer has no {attr}()")
    buf = io.BytesIO()
    try:
        torch.save(old.state_dict(), buf)
        buf.seek(0)
        saved = torch.load(buf)
    except Exception as exc:
        raise NotImplementedError(
            f"its state_dict() does not survive torch.save/torch.load: {describe_exception(exc)}"
        ) from None
    try:
        fresh.load_state_dict(saved)
    except Exception as exc:
        raise NotImplementedError(
            f"load_state_dict() of its own checkpoint raised {describe_exception(exc)}"
        ) from None


def pytree_reload(jax: Any, state: Any, fresh: Any) -> Any:
    """``state``'s leaves through ``numpy.savez`` bytes, in the tree structure of ``fresh``."""
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(state)]
    treedef = jax.tree_util.tree_structure(fresh)
    buf = io.BytesIO()
    np.savez(buf, *leaves)
    buf.seek(0)
    with np.load(buf) as z:
        loaded = [z[f"arr_{i}"] for i in range(len(leaves))]
    # NumPy stores extension dtypes (ml_dtypes' bfloat16) as raw bytes: view them back
    loaded = [a if a.dtype == x.dtype else a.view(x.dtype) for a, x in zip(loaded, leaves)]
    if treedef.num_leaves != len(loaded):
        raise NotImplementedError(
            f"the saved state has {len(loaded)} leaves, a fresh init {treedef.num_leaves}"
        )
    return jax.tree_util.tree_unflatten(treedef, loaded)
