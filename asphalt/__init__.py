"""Asphalt: a distributed execution server in one executable."""

from __future__ import annotations

__version__ = "0.1.0"
