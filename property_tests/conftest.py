"""Loads the hypothesis profile (env HYPOTHESIS_PROFILE, default ``ci``) for the property suite."""

from __future__ import annotations

from property_tests.profiles import load_from_env

load_from_env()
