"""A job's artifacts: the files it left in its logs and results directories, kept with the
attempt that made them. The names come from the job, so they are checked here before any is
kept; pure."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from asphalt.wire import Record

KINDS = ("logs", "results")  # the directories, and the first part of every artifact's path
MAX_PATH = 1024
MAX_FILES = 10000  # in one attempt
CHUNK = 256 << 10  # bytes in one stored piece of a file


def path_problem(path: str) -> str | None:
    """What makes an artifact's path unsafe to keep (None: it is fine). A path is relative, in
    one of KINDS, made of plain names: no "..", ".", empty parts or control characters."""
    parts = path.split("/")
    if len(path) > MAX_PATH:
        return f"a path is at most {MAX_PATH} characters"
    if parts[0] not in KINDS or len(parts) < 2:
        return f"a path starts with {' or '.join(k + '/' for k in KINDS)}"
    if any(part in ("", ".", "..") for part in parts):
        return 'a path has no empty, "." or ".." parts and does not start with "/"'
    if any(not c.isprintable() for c in path):
        return "a path has no control characters"
    return None


class Artifact(Record, frozen=True, kw_only=True):
    """One file of an attempt: announced by the worker, then received (with its digest), or
    dropped with the reason."""

    path: str
    size: int  # as announced; once received, as stored
    sha256: str | None = None  # set once the whole file is stored
    dropped: str | None = None

    def view(self, job_id: str, attempt: int) -> dict[str, Any]:
        body: dict[str, Any] = {"path": self.path, "size": self.size}
        if self.dropped is not None:
            body["dropped"] = self.dropped
        elif self.sha256 is None:
            body["received"] = False
        else:
            body["sha256"] = self.sha256
            url = f"/jobs/{job_id}/artifacts/{quote(self.path)}"
            body["url"] = f"{url}?attempt={attempt}"
        return body
