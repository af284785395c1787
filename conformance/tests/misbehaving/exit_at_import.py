"""Calls ``sys.exit(0)`` when imported: the harness must not end (nor read it as conformant)."""

import sys

import torch

sys.exit(0)


class Adam(torch.optim.Adam):
    pass
