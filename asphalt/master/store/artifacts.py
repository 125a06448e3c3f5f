"""The artifacts tables: job, attempt, path -> an Artifact (artifacts), and the file's bytes in
pieces (artifact_data); written through `Store.change`, removed with their task."""

from __future__ import annotations

import struct

from asphalt.master.store import keys, records
from asphalt.master.store.migrations import Tables
from asphalt.model.artifacts import Artifact


def _attempt_key(job: str, attempt: int) -> bytes:
    return job.encode() + keys.SEP + struct.pack(">I", attempt)


def _key(job: str, attempt: int, path: str) -> bytes:
    return _attempt_key(job, attempt) + path.encode()


def _piece_key(job: str, attempt: int, path: str, index: int) -> bytes:
    return _key(job, attempt, path) + keys.SEP + struct.pack(">I", index)


def put(tables: Tables, job: str, attempt: int, artifact: Artifact) -> None:
    tables.put("artifacts", _key(job, attempt, artifact.path), records.pack(artifact))


def get(tables: Tables, job: str, attempt: int, path: str) -> Artifact | None:
    raw = tables.get("artifacts", _key(job, attempt, path))
    return records.decode(raw, Artifact) if raw is not None else None


def listed(tables: Tables, job: str, attempt: int) -> list[Artifact]:
    """The attempt's artifacts, by path."""
    raw = tables.scan("artifacts", _attempt_key(job, attempt))
    return [records.decode(value, Artifact) for value in raw]


def put_piece(tables: Tables, job: str, attempt: int, path: str, index: int, data: bytes) -> None:
    tables.put("artifact_data", _piece_key(job, attempt, path, index), data)


def piece(tables: Tables, job: str, attempt: int, path: str, index: int) -> bytes | None:
    """One piece of a stored file (None past its end)."""
    return tables.get("artifact_data", _piece_key(job, attempt, path, index))


def drop_file(tables: Tables, job: str, attempt: int, path: str) -> None:
    """Remove a file's pieces (a file sent again replaces them)."""
    for key in list(tables.keys("artifact_data", _key(job, attempt, path) + keys.SEP)):
        tables.delete("artifact_data", key)


def delete(tables: Tables, job: str, attempt: int | None = None) -> None:
    """Remove an attempt's artifacts, or with no attempt every attempt's."""
    prefix = _attempt_key(job, attempt) if attempt is not None else job.encode() + keys.SEP
    for table in ("artifacts", "artifact_data"):
        for key in list(tables.keys(table, prefix)):
            tables.delete(table, key)
