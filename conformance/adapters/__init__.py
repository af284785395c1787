"""Adapters: turn an implementation (torch.optim, optax, our ports, third-party code) into a Port.

Each framework is imported only inside its adapter module, lazily (when a port is built or its
availability is asked), so ``import conformance`` needs numpy and setadam_ref only.
``conformance.adapters.registry.available_ports`` lists what ``setadam-conformance run`` checks.
"""
