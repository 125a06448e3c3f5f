"""Who the master deals with besides tasks: workers, and the credentials it issues (API
tokens, sessions); pure records."""

from __future__ import annotations

from typing import Any

from asphalt.model.records import Scope, rfc3339
from asphalt.wire import Record


class Worker(Record, frozen=True, kw_only=True):
    """A worker as the master knows it; `last_seen` is wall time, persisted on heartbeats."""

    id: str
    name: str
    host: str
    types: tuple[str, ...]
    runtimes: tuple[str, ...]
    slots: int
    version: str
    registered_at: float
    last_seen: float
    untyped: bool = False  # with types, also take jobs that name none
    draining: bool = False
    gone: bool = False
    secret_hash: str = ""  # SHA-256 of the credential the master gave it at registration
    revoked: bool = False  # an admin cut it off: its credential is refused from then on
    embedded: bool = False  # the master's own worker: it dies with the master's process
    env_allow: tuple[str, ...] = ()  # the names (and PREFIX_*) of its variables jobs may get


class Token(Record, frozen=True, kw_only=True):
    """A credential the master issued; only the SHA-256 of its secret is kept.

    A session (a browser that logged in with a token) is a Token too, with `parent` naming the
    token it was made from: revoking that token ends its sessions.
    """

    id: str
    name: str
    scope: Scope
    secret_hash: str
    created_at: float
    projects: tuple[str, ...] = ()  # ids or names; empty means every project
    last_used: float | None = None
    parent: str | None = None
    expires_at: float | None = None

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "scope": self.scope,
            "projects": list(self.projects),
            "created": rfc3339(self.created_at),
            "lastUsed": rfc3339(self.last_used),
        }
