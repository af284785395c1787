"""Checks of sharded ports: a port whose parameters are split across the ranks of a process
group. :mod:`.assemble` turns the ranks' local answers into the full arrays the driver compares."""
