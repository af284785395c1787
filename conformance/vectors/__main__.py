"""``python -m conformance.vectors export DIR | check DIR OUTPUTS``."""

from __future__ import annotations

import sys

from conformance.vectors.cli import main

if __name__ == "__main__":
    sys.exit(main())
