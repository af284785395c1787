"""Hypothesis property tests of the mathematics of Adam and SET-Adam (public API of setadam_ref only).

Each test's docstring names the docs section that proves the property it checks
(docs/src/theory/invariants.md, docs/src/theory/stepsize-range.md, docs/src/numerics/reference-error.md).
"""
