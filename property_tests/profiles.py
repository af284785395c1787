"""Hypothesis profiles of the property suite.

- ``ci``: derandomized, no example database, modest example counts, no deadline; the whole
  property suite runs in well under 3 minutes on the 2-core CI machine. Failures print the
  reproduction blob.
- ``thorough``: at least 10^4 examples per property, example database on (failures are replayed
  first on the next run).
- ``soak``: like ``thorough`` with 10^3 examples per property (a randomized hunt that fits
  in well under an hour on 2 cores).
- ``dev``: a quick randomized profile for local iteration.

The profile is chosen by the environment variable ``HYPOTHESIS_PROFILE`` (default ``ci``); see
``property_tests/README.md``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

#: Health checks that our deliberately heavy strategies (arrays up to 10^4 entries) trip.
_SUPPRESSED = (HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much)

CI_EXAMPLES = 60
THOROUGH_EXAMPLES = 10_000

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    max_examples=CI_EXAMPLES,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SUPPRESSED,
)
settings.register_profile(
    "thorough",
    derandomize=False,
    database=DirectoryBasedExampleDatabase(
        os.path.join(
            os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".hypothesis", "examples"
        )
    ),
    max_examples=THOROUGH_EXAMPLES,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SUPPRESSED,
)
settings.register_profile(
    "soak",
    parent=settings.get_profile("thorough"),
    max_examples=1_000,
)
settings.register_profile(
    "dev",
    max_examples=30,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SUPPRESSED,
)


def load_from_env() -> str:
    """Load the profile named by ``HYPOTHESIS_PROFILE`` (default ``ci``) and return its name."""
    name = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    settings.load_profile(name)
    return name


def examples(n: int) -> int:
    """Example count for one property: ``n`` under ``ci``/``dev``, the profile's count under
    ``thorough`` (so every property gets at least 10^4 examples there)."""
    current = settings().max_examples
    return current if current >= THOROUGH_EXAMPLES else n
