"""Deliberately wrong SET-Adam ports (and deliberately equivalent ones) for the meta-tests.

Nothing here is imported by ``conformance`` itself; the torch and jax modules import their
framework at import time, so load them only where that framework is installed. ``WRONG_PORTS``
lists every port as data: where it lives, its bug class, the stage where the harness should catch
it, the scenario family that exposes it, and the catalogue entry (``conformance.deviations``) that
should be named as its likely cause.
"""
