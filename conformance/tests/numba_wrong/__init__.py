"""Planted numba ports for the scale families: an outside implementer's block-parallel CPU SET-Adam
(its own kernels, state names and host code), correct on every layer that fits in one block."""
