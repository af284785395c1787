"""Planted ports that only differential fuzzing finds (no default scenario catches them)."""
