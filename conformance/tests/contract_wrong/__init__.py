"""Planted ports for the contract families (issue 12): one bug per family, written as outside
implementers write torch optimizers (their own state names and containers), each correct on the
dense, single-group, constant-lr scenarios."""
