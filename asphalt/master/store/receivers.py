"""The receivers table: project, kind -> a project's receiver for one service's pushes,
written through `Store.change`."""

from __future__ import annotations

from asphalt.master.store import keys, records
from asphalt.master.store.migrations import Tables
from asphalt.model.receivers import Receiver


def _key(project: str, kind: str) -> bytes:
    return project.encode() + keys.SEP + kind.encode()


def put(tables: Tables, receiver: Receiver) -> None:
    tables.put("receivers", _key(receiver.project, receiver.kind), records.pack(receiver))


def get(tables: Tables, project: str, kind: str) -> Receiver | None:
    raw = tables.get("receivers", _key(project, kind))
    return records.decode(raw, Receiver) if raw is not None else None


def of(tables: Tables, project: str) -> list[Receiver]:
    return [
        records.decode(raw, Receiver)
        for raw in tables.scan("receivers", project.encode() + keys.SEP)
    ]


def delete(tables: Tables, project: str, kind: str) -> bool:
    key = _key(project, kind)
    if tables.get("receivers", key) is None:
        return False
    tables.delete("receivers", key)
    return True
