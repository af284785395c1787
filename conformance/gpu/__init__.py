"""GPU-only tooling: the one-command GPU check (``run_gpu.sh``) and the optimizer benchmark
(:mod:`conformance.gpu.bench`).  Nothing here runs in CPU CI beyond imports; torch, jax and cupy
are imported inside the functions."""
