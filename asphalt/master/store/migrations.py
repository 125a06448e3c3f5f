"""The store's schema version and the steps that bring an older store up to it.

A store with no version is version 1 (the release before task graphs) unless it is empty. Each
step rewrites records in the one transaction that also writes the new version, so a crash in a
migration leaves the store as it was, and the next start runs it again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from asphalt.errors import Unavailable
from asphalt.master.store import records
from asphalt.model.graph import roles_as_graph

if TYPE_CHECKING:
    from asphalt.master.store.batch import Txn

SCHEMA = 3
VERSION_KEY = b"schema"


class Tables:
    """A transaction and the store's tables by name: what a migration step uses, and the
    tables kept beside the core's (hooks.py)."""

    def __init__(
        self,
        txn: Txn,
        dbs: dict[str, Any],
        put: Callable[[Txn, str, bytes, bytes], None],
        delete: Callable[[Txn, str, bytes], None] | None = None,
    ):
        self.txn = txn
        self._dbs = dbs
        self._put = put
        self._delete = delete  # counts toward the batch's size, as a put does

    def get(self, table: str, key: bytes) -> bytes | None:
        return self.txn.get(key, db=self._dbs[table])

    def put(self, table: str, key: bytes, value: bytes) -> None:
        self._put(self.txn, table, key, value)

    def items(self, table: str) -> Iterator[tuple[bytes, bytes]]:
        yield from list(self.txn.cursor(db=self._dbs[table]))

    def keys(self, table: str, prefix: bytes) -> Iterator[bytes]:
        """The keys that start with `prefix`, in order (read lazily: list them to delete)."""
        cursor = self.txn.cursor(db=self._dbs[table])
        more = cursor.set_range(prefix)
        while more and cursor.key().startswith(prefix):
            yield bytes(cursor.key())
            more = cursor.next()

    def around(self, table: str, prefix: bytes, key: bytes) -> Iterator[tuple[bytes, bytes]]:
        """The items whose keys start with `prefix`, in order, from the last one at or before
        `key` (from the first, if none is)."""
        cursor = self.txn.cursor(db=self._dbs[table])
        found = cursor.set_range(key)
        if not found:
            found = cursor.last()
        elif cursor.key() != key:
            found = cursor.prev()
        if not found or not cursor.key().startswith(prefix):
            found = cursor.set_range(prefix)
        while found and cursor.key().startswith(prefix):
            yield bytes(cursor.key()), bytes(cursor.value())
            found = cursor.next()

    def delete(self, table: str, key: bytes) -> None:
        if self._delete is not None:
            self._delete(self.txn, table, key)
        else:
            self.txn.delete(key, db=self._dbs[table])

    def scan(self, table: str, prefix: bytes, *, newest: bool = False) -> Iterator[bytes]:
        """The values whose keys start with `prefix`, in key order (or backwards)."""
        cursor = self.txn.cursor(db=self._dbs[table])
        if not newest:
            found = cursor.set_range(prefix)
            while found and cursor.key().startswith(prefix):
                yield cursor.value()
                found = cursor.next()
            return
        found = cursor.set_range(prefix + b"\xff" * 9)
        found = cursor.prev() if found else cursor.last()
        while found and cursor.key().startswith(prefix):
            yield cursor.value()
            found = cursor.prev()

    def empty(self, table: str) -> bool:
        return int(self.txn.stat(self._dbs[table])["entries"]) == 0


def upgrade(tables: Tables) -> int | None:
    """Bring the store to SCHEMA; the version it had, if it was migrated."""
    raw = tables.get("meta", VERSION_KEY)
    if raw is not None:
        version = int(records.unpack_value(raw))
    else:
        version = 1 if not (tables.empty("projects") and tables.empty("jobs")) else SCHEMA
    if version > SCHEMA:
        raise Unavailable(
            f"this store has schema {version}, written by a newer asphalt than this one "
            f"(schema {SCHEMA}); run that release, or a newer one"
        )
    for step in range(version, SCHEMA):
        _STEPS[step](tables)
    if raw is None or version != SCHEMA:
        tables.put("meta", VERSION_KEY, records.pack_value(SCHEMA))
    return version if version != SCHEMA else None


def _roles_to_names(tables: Tables) -> None:
    """1 -> 2: a job had a role; now it has a name and its place in the task's graph, which for
    the four roles is the graph they always were. It also gains outputs and two counters."""
    for _, raw in tables.items("tasks"):
        task = records.unpack_value(raw)
        for run in task["runs"]:
            graph = roles_as_graph(run["jobs"])
            for name, job_id in run["jobs"].items():
                key = job_id.encode()
                stored = tables.get("jobs", key)
                if stored is None:
                    continue
                job = records.unpack_value(stored)
                if "name" in job:
                    continue
                job["name"] = job.pop("role", name)
                node = graph.get(name)
                job["spec"].setdefault("needs", list(node.needs) if node else [])
                job["spec"].setdefault("when", str(node.when) if node else "success")
                job.setdefault("outputs", {})
                job.setdefault("lost", 0)
                job.setdefault("added", False)
                new = records.pack_value(job)
                records.job(new)  # it must read back as a job of this release, or nothing moves
                tables.put("jobs", key, new)


def _output_ends(tables: Tables) -> None:
    """2 -> 3: output past the cap was cut, its last bytes counted and not kept; now it keeps
    its end, and a piece's key says where in all the job printed it began. Output cut the old
    way ends where it was cut, its marker in it: its length received is what it kept, so that
    reading its end (the last 64 KiB a view shows) finds what is there."""
    for key, raw in tables.items("outmeta"):
        received, stored = records.unpack_value(raw)
        if int(received) > int(stored):
            tables.put("outmeta", key, records.pack_value((int(stored), int(stored))))


_STEPS: dict[int, Callable[[Tables], None]] = {1: _roles_to_names, 2: _output_ends}
