"""The terminal client: `asphalt run`, `logs`, `ls`, `show`, `rerun`, `cancel`, `workers`,
`login`, talking to a master over its HTTP API (client/api.py)."""

from __future__ import annotations

from asphalt.client.commands import SUBCOMMANDS, main

__all__ = ["SUBCOMMANDS", "main"]
