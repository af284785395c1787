"""``python -m conformance`` = ``setadam-conformance``."""

from .cli import main

raise SystemExit(main())
