"""setadam-ref conformance harness: checks Adam and SET-Adam implementations against setadam_ref.

Frameworks (torch, jax, cupy) are imported only inside their adapters and ports, lazily, so that
importing this package needs nothing beyond numpy and setadam_ref. The Python API is
:func:`check_target` (:mod:`conformance.api`; docs: guide/pytest-plugin.md).
"""

from __future__ import annotations

from typing import Any

__all__ = ["CheckResult", "check_target"]


def __getattr__(name: str) -> Any:  # lazy: ``import conformance`` stays light
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'conformance' has no attribute {name!r}")
