"""Deliberately misbehaving torch optimizers for the isolation tests (``check MODULE:ATTR``).

Each computes torch.optim.Adam's step correctly and does one bad thing, from the third call
to ``step()`` in its process on (the harness's first calls probe the state layout): exit,
crash, hang, leak a thread, flood the output, change the working directory. The modules
``exit_at_import`` and ``hang_at_import`` misbehave when they are imported.
"""
