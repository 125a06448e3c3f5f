"""Fresh working directories for host and singularity jobs: one per attempt, private, removed
after the job in the background so a slow disk never holds the job's end."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import re
import shutil
import stat
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from .base import JobSpec, RuntimeFailure

# Where jobs work when the worker names no directory: one per user in the temp dir.
DEFAULT_WORK_ROOT = Path(tempfile.gettempdir()) / f"asphalt-work-{os.getuid()}"


class WorkDirs:
    """The working directories under one root.

    Removing a directory is a journal write on most file systems, and it waits behind every
    fsync on the same disk (the master's store, if it shares one): a fraction of a millisecond
    that a short job would otherwise wait at its end. So a job's directory is removed by a task
    this object owns, in a thread; `close` waits for every one, and a worker killed before they
    ran has them removed at its restart by `remove_left`.
    """

    def __init__(self, root: Path | None) -> None:
        self.root = DEFAULT_WORK_ROOT if root is None else root
        self._checked = False
        self._removing: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def fresh(self, spec: JobSpec) -> AsyncIterator[Path]:
        """A new, empty, private (0700) directory for one attempt, removed with all it holds."""
        path = self._make(spec)  # a few quick calls, and no cancel can come between them
        try:
            yield path
        finally:
            task = asyncio.get_running_loop().create_task(asyncio.to_thread(_remove_tree, path))
            self._removing.add(task)
            task.add_done_callback(self._removing.discard)

    async def close(self) -> None:
        """Return once every ended job's directory is gone."""
        while self._removing:
            await asyncio.gather(*self._removing, return_exceptions=True)

    def remove_left(self, worker_id: str) -> None:
        """Remove what an earlier, dead run of this worker left (blocking: call in a thread)."""
        for left in self.root.glob(f"{glob.escape(worker_prefix(worker_id))}*"):
            _remove_tree(left)

    def _make(self, spec: JobSpec) -> Path:
        try:
            if not self._checked:
                self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
                found = os.lstat(self.root)
                if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid():
                    # In a shared temp dir another user could have made it first, to watch.
                    raise RuntimeFailure(
                        f"work directory {self.root} is not a directory of this user's"
                    )
                self._checked = True
            prefix = f"{worker_prefix(spec.worker_id)}{safe_name(spec.job_id)}-{spec.attempt}-"
            return Path(tempfile.mkdtemp(prefix=prefix, dir=self.root))  # mode 0700
        except FileNotFoundError:
            self._checked = False  # the root went away meanwhile: make it again next time
            raise RuntimeFailure(f"cannot make a working directory in {self.root}") from None
        except OSError as e:
            raise RuntimeFailure(f"cannot make a working directory in {self.root}: {e}") from e


def worker_prefix(worker_id: str) -> str:
    """What the directories of one worker's jobs begin with, so a dead run's can be found."""
    return f"{safe_name(worker_id) or '_'}+"  # never in a safe_name: "w+" is not "w-1+"


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")[:64]


def _remove_tree(path: Path) -> None:
    """Remove path and all in it, even directories the job made unreadable or unwritable."""
    try:
        if path.is_symlink():  # never change anything outside through a link
            path.unlink()
        else:
            shutil.rmtree(path)
        return
    except FileNotFoundError:
        return
    except OSError:
        pass  # a directory it cannot list or empty: make them ours again, and try once more
    with contextlib.suppress(OSError):
        path.chmod(0o700)
    for parent, dirs, _ in os.walk(path):
        for inner in (Path(parent, name) for name in dirs):
            if not inner.is_symlink():
                with contextlib.suppress(OSError):
                    inner.chmod(0o700)
    shutil.rmtree(path, ignore_errors=True)
