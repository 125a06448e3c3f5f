"""A job's artifact directories on the worker: made fresh for each attempt, then walked when
the job ends and sent to the master file by file. Nothing the job left is trusted: symlinks are
never followed (each part of a path is opened with O_NOFOLLOW, under the directory's own
descriptor), and only regular files are sent."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from asphalt import log
from asphalt.model.artifacts import MAX_FILES, path_problem
from asphalt.protocol import Manifest
from asphalt.worker.client import MasterClient, MasterError, Stale, UnknownWorker, Unreachable

_log = log.get("asphalt.artifacts")
ENV = {"logs": "ASPHALT_LOGS_DIR", "results": "ASPHALT_RESULTS_DIR"}
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK


@dataclass(frozen=True, slots=True)
class ArtifactDirs:
    """Where a job's logs and results go on this machine, by kind ("logs", "results"), and where
    the job sees each (its path inside the container; for a host job the same directory)."""

    on_host: dict[str, Path]
    in_job: dict[str, str]

    @classmethod
    def make(cls, private: Path, wanted: dict[str, str | None], *, host: bool) -> ArtifactDirs:
        """Fresh directories under the job's private one, for each kind it asks for. They are
        open to every user (a container's user may be anyone); the private parent is not."""
        on_host: dict[str, Path] = {}
        in_job: dict[str, str] = {}
        for kind, inside in wanted.items():
            if inside is None:
                continue
            path = private / kind
            path.mkdir()
            path.chmod(0o777)
            on_host[kind] = path
            in_job[kind] = str(path) if host else inside
        return cls(on_host, in_job)

    def env(self) -> dict[str, str]:
        return {ENV[kind]: where for kind, where in self.in_job.items()}

    def mounts(self) -> dict[str, Path]:
        """Each directory by where the job's container sees it."""
        return {self.in_job[kind]: path for kind, path in self.on_host.items()}


MANIFEST_BYTES = 768 << 10  # of paths in one manifest: it goes as one request body (1 MiB)


def collect(dirs: ArtifactDirs) -> Manifest:
    """Every regular file in the directories (path, size), and what was passed over, and why;
    at most MAX_FILES entries and MANIFEST_BYTES of paths, a note saying where it stopped."""
    files: list[tuple[str, int]] = []
    skipped: list[tuple[str, str]] = []
    room = [MAX_FILES - 1, MANIFEST_BYTES]  # entries and bytes left, one kept for the note
    for kind, root in dirs.on_host.items():
        try:
            fd = os.open(root, _DIR_FLAGS)
        except OSError:
            skipped.append((f"{kind}/", "the directory was removed or replaced by the job"))
            continue
        try:
            for name, found in _walk(fd, kind):
                room[0] -= 1
                room[1] -= len(name.encode()) + 32
                if room[0] < 0 or room[1] < 0:
                    why = f"more than {MAX_FILES} files or {MANIFEST_BYTES >> 10} KiB of names"
                    skipped.append((f"{kind}/", why + ": the rest were not sent"))
                    return Manifest(files=files, skipped=skipped)
                if isinstance(found, int):
                    files.append((name, found))
                else:
                    skipped.append((name, found))
        finally:
            os.close(fd)
    return Manifest(files=files, skipped=skipped)


def _walk(dir_fd: int, prefix: str) -> Iterator[tuple[str, int | str]]:
    """(path, size) for regular files and (path, why) for what is not sent, depth first."""
    try:
        names = sorted(os.listdir(dir_fd))
    except OSError as e:
        yield f"{prefix}/", f"cannot be listed: {e.strerror}"
        return
    for name in names:
        path = f"{prefix}/{name}"
        if path_problem(path) is not None:
            yield f"{prefix}/{_shown(name)}", "its name is not one that can be kept"
            continue
        try:
            found = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            continue  # gone meanwhile
        if stat.S_ISLNK(found.st_mode):
            yield path, "a symbolic link: links are never followed"
        elif stat.S_ISDIR(found.st_mode):
            try:
                inner = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            except OSError as e:
                yield f"{path}/", f"cannot be opened: {e.strerror}"
                continue
            try:
                yield from _walk(inner, path)
            finally:
                os.close(inner)
        elif stat.S_ISREG(found.st_mode):
            yield path, found.st_size
        else:
            yield path, "not a regular file"


def _shown(name: str) -> str:
    """A name that cannot be kept, as it can be listed: undecodable bytes and control
    characters as "?"."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return "".join(c if c.isprintable() else "?" for c in text)[:200] or "?"


def open_artifact(dirs: ArtifactDirs, path: str) -> IO[bytes]:
    """The file at `path` (kind/...), opened part by part without following a link."""
    kind, *parts = path.split("/")
    fd = os.open(dirs.on_host[kind], _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = inner
        file_fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(file_fd).st_mode):
        os.close(file_fd)
        raise OSError(f"{path} is not a regular file")
    os.set_blocking(file_fd, True)
    return os.fdopen(file_fd, "rb")


async def deliver(
    client: MasterClient, worker: str, job: str, attempt: int, dirs: ArtifactDirs
) -> None:
    """Send the job's artifacts; while the master is away, keep them and try again. Returns
    once the master has them, or says this attempt is no longer this worker's."""
    manifest = await asyncio.to_thread(collect, dirs)
    tries = 0
    while True:
        try:
            wanted = await client.artifacts(worker, job, attempt, manifest)
            for path in wanted:
                await _send(client, worker, job, attempt, dirs, path)
            return
        except Unreachable as e:  # kept here; announced and sent again from the start
            wait = min(0.2 * 2**tries, 5.0)
            _log.warning("artifacts_failed", job=job, error=str(e), retry_s=wait)
            await asyncio.sleep(wait)
            tries += 1
        except MasterError as e:  # no longer this worker's attempt, or refused: said why
            _log.warning("artifacts_refused", job=job, error=str(e))
            return


async def _send(
    client: MasterClient, worker: str, job: str, attempt: int, dirs: ArtifactDirs, path: str
) -> None:
    """One file; one the master refuses (it changed since it was announced) is passed over."""
    try:
        file = await asyncio.to_thread(open_artifact, dirs, path)
    except OSError:
        return  # changed since it was listed: announced, never received
    try:
        with contextlib.closing(file):
            await client.artifact(worker, job, attempt, path, file)
    except (Unreachable, Stale, UnknownWorker):
        raise
    except MasterError as e:
        _log.warning("artifact_refused", job=job, path=path, error=str(e))
