"""`python -m asphalt` is the `asphalt` executable."""

from __future__ import annotations

from asphalt.cli import main

raise SystemExit(main())
