"""setadam-ref conformance harness: checks Adam and SET-Adam implementations against setadam_ref.

Frameworks (torch, jax, cupy) are imported only inside their adapters and ports, lazily, so that
importing this package needs nothing beyond numpy and setadam_ref.
"""
