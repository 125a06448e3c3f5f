"""A worker's allow list for its own environment (`-env-allow NAME,PREFIX_*`): which of its
variables a job may be given. Shared by the worker (what it passes) and the master (which
workers may run a job that asks for some); pure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

OWN = "ASPHALT_"  # the worker's own settings (its join token among them): never passed on


def allowed(name: str, allow: Sequence[str]) -> bool:
    """Whether the allow list (names, PREFIX_*) lets `name` through to jobs."""
    if name.startswith(OWN):
        return False
    return any(name.startswith(p[:-1]) if p[-1] == "*" else name == p for p in allow)


def refused(names: Iterable[str], allow: Sequence[str]) -> list[str]:
    """The names the allow list does not let through, in the order given."""
    return [name for name in names if not allowed(name, allow)]
