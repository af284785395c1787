"""Differential fuzzing of a port against the reference, shrunk to a minimal reproducer.

``setadam-conformance fuzz TARGET`` (:mod:`conformance.fuzz.command`); the Python API is
:func:`conformance.fuzz.engine.fuzz` on a port spec and :func:`fuzz_target` for a
``MODULE:ATTR`` or registry name (what a pytest plugin calls: one test item per target).
"""

from __future__ import annotations

from .engine import FuzzOptions, FuzzResult, fuzz

__all__ = ["FuzzOptions", "FuzzResult", "fuzz"]
