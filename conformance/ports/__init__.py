"""Our own implementations of SET-Adam (torch, jax, cuda), written from the mathematics alone.

A port never imports setadam_ref: a port computed through the reference would pass every check and
prove nothing.
"""
