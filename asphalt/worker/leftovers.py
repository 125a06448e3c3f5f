"""Finds the runs of this worker that died and ends what they left running (by lock files).

Each running worker holds an exclusive lock on `STATE_DIR/<worker id>.lock`. A lock that a new
worker can take belongs to a run that is gone (killed, crashed, rebooted): its containers and
process groups, found by the worker id they carry, are ended and the file removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
from pathlib import Path
from typing import IO

from asphalt import log
from asphalt.worker.runtimes.base import Runtime

_log = log.get("asphalt.leftovers")


def _lock_files(state_dir: Path) -> list[Path]:
    state_dir.mkdir(parents=True, exist_ok=True)
    return sorted(state_dir.glob("*.lock"))


def _try_lock(path: Path) -> IO[str] | None:
    handle = path.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


async def reap(state_dir: Path, runtimes: list[Runtime]) -> list[str]:
    """End what dead runs of workers sharing `state_dir` left; return the job ids found."""
    found: list[str] = []
    for path in await asyncio.to_thread(_lock_files, state_dir):
        handle = _try_lock(path)
        if handle is None:
            continue  # that run is alive
        try:
            for runtime in runtimes:
                jobs = await runtime.reap(path.stem)
                if jobs:
                    _log.warning(
                        "leftovers_ended", worker=path.stem, runtime=runtime.name, jobs=jobs
                    )
                found += jobs
            path.unlink(missing_ok=True)
        finally:
            handle.close()
    return found


class Claim:
    """This run's lock, held until the worker stops."""

    def __init__(self, state_dir: Path, worker_id: str) -> None:
        self.path = state_dir / f"{worker_id}.lock"
        handle = _try_lock(self.path)
        if handle is None:
            raise RuntimeError(f"{self.path} is locked by another worker")
        self._handle = handle

    def release(self) -> None:
        """A clean stop: nothing is left, so the file goes too."""
        with contextlib.suppress(OSError):
            self.path.unlink()
        self._handle.close()
