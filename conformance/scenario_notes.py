"""What a port's report says about how a scenario of a special kind was compared.

The driver (:mod:`conformance.drive`) adds these to a scenario's notes, so a reader of the report
knows what was judged and what was not for compiled, resumed and contract scenarios and for a
state whose convention is not assumed.
"""

from __future__ import annotations

UNJUDGED_STATE = "m and v reported, not judged (the target's state convention is not assumed)"
UNREAD_STATE = (
    "m and v not compared re-synced: the port took the given state but did not report its own "
    "after the step (state() gave none); its parameters were compared"
)
COMPILED = (
    "free run through the port's compiled step (torch.compile(opt.step)); no re-synced steps "
    "(each builds a fresh optimizer: a compilation apiece)"
)
RESUMED = (
    "free run through a checkpoint round trip after step {k} (state to bytes, fresh optimizer "
    "over fresh parameters), against the uninterrupted reference; no re-synced steps"
)
CONTRACT = (
    "a contract scenario (param groups / lr schedule / absent gradients): parameters, m, v and "
    "the stage intermediates of the parameters with a gradient compared; failures ranked by "
    "the contract's catalogue (conformance.contract_causes)"
)
