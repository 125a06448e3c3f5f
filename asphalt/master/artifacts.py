"""Artifacts: a worker announces the files a job left (the manifest), the master says which it
keeps within the per-attempt cap, and then takes each one as a stream, storing it in pieces
and its SHA-256; people list them, download one, or all of them as a tar.gz."""

from __future__ import annotations

import asyncio
import hashlib
import tarfile
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from typing import IO, Any

from asphalt.errors import BadRequest, Conflict, NotFound
from asphalt.master.core.scheduler import Scheduler
from asphalt.master.store import artifacts as table
from asphalt.model.artifacts import CHUNK, KINDS, MAX_FILES, Artifact, path_problem
from asphalt.model.members import Worker
from asphalt.model.records import Job, JobState
from asphalt.protocol import Manifest

Read = Callable[[int], Awaitable[bytes]]
ARCHIVE_PIECE = 1 << 20


class Artifacts:
    def __init__(self, scheduler: Scheduler, cap: int) -> None:
        self.scheduler = scheduler
        self.store = scheduler.store
        self.cap = cap

    def _running(self, worker: Worker, job_id: str, attempt: int) -> Job:
        job = self.scheduler.leases.held(worker, job_id, attempt)
        if job.state is not JobState.RUNNING:
            raise Conflict(f"job {job_id} has ended; its artifacts are closed")
        return job

    def manifest(self, worker: Worker, job_id: str, attempt: int, given: Manifest) -> list[str]:
        """Keep the files announced (those past the cap, or with unsafe paths, as dropped);
        the paths the worker is to send. Announcing again starts the attempt's files over."""
        self._running(worker, job_id, attempt)
        if len(given.files) + len(given.skipped) > MAX_FILES:
            raise BadRequest(f"at most {MAX_FILES} files per attempt", field="files")
        kept: list[Artifact] = []
        total = 0
        for path, why in given.skipped:  # a file passed over, or a note on a whole directory
            whole = path.endswith("/") and path.rstrip("/") in KINDS
            if whole or path_problem(path) is None:
                kept.append(Artifact(path=path, size=0, dropped=why[:200]))
        for path, size in given.files:
            problem = path_problem(path)
            if problem is not None:
                raise BadRequest(f"artifact {path[:80]!r}: {problem}", field="files")
            if total + size > self.cap:
                why = f"over the cap of {self.cap} bytes of artifacts per job (-artifact-cap)"
                kept.append(Artifact(path=path, size=size, dropped=why))
            else:
                total += size
                kept.append(Artifact(path=path, size=size))

        def write(tables: Any) -> None:
            table.delete(tables, job_id, attempt)
            for artifact in kept:
                table.put(tables, job_id, attempt, artifact)

        self.store.change(write)
        return [a.path for a in kept if a.dropped is None]

    async def receive(
        self, worker: Worker, job_id: str, attempt: int, path: str, read: Read
    ) -> Artifact:
        """Store one announced file from `read` (the request body), at most its size."""
        self._running(worker, job_id, attempt)
        announced = self.store.look(lambda t: table.get(t, job_id, attempt, path))
        if announced is None or announced.dropped is not None:
            raise Conflict(f"{path!r} is not an artifact this attempt announced to be sent")
        self.store.change(lambda t: table.drop_file(t, job_id, attempt, path))
        try:
            size, digest = await self._pieces_in(job_id, attempt, path, announced.size, read)
            self._running(worker, job_id, attempt)  # still this worker's, after the wait
        except BaseException:  # refused, cut off or stopped: no half file is kept
            self.store.change(lambda t: table.drop_file(t, job_id, attempt, path))
            raise
        done = Artifact(path=path, size=size, sha256=digest)
        self.store.change(lambda t: table.put(t, job_id, attempt, done))
        await self.store.flushed()
        return done

    async def _pieces_in(
        self, job_id: str, attempt: int, path: str, most: int, read: Read
    ) -> tuple[int, str]:
        """Store what `read` gives in pieces of CHUNK bytes; (its size, its SHA-256)."""
        digest, size, index = hashlib.sha256(), 0, 0
        held = b""
        while True:
            data = await read(CHUNK)
            size += len(data)
            if size > most:
                raise BadRequest(f"{path!r} is longer than the {most} bytes announced")
            digest.update(data)
            held += data
            while len(held) >= CHUNK or (held and not data):  # whole pieces; the rest at the end
                self.store.change(
                    partial(
                        table.put_piece,
                        job=job_id,
                        attempt=attempt,
                        path=path,
                        index=index,
                        data=held[:CHUNK],
                    )
                )
                held, index = held[CHUNK:], index + 1
            if not data:
                return size, digest.hexdigest()

    def listed(self, job: Job, attempt: int) -> list[Artifact]:
        return self.store.look(lambda t: table.listed(t, job.id, attempt))

    def found(self, job: Job, attempt: int, path: str) -> Artifact:
        artifact = self.store.look(lambda t: table.get(t, job.id, attempt, path))
        if artifact is None or artifact.sha256 is None:
            raise NotFound(
                f"job {job.id} attempt {attempt} has no artifact {path!r}; list them with "
                f"GET /jobs/{job.id}/artifacts",
                field="path",
            )
        return artifact

    def piece(self, job: Job, attempt: int, path: str, index: int) -> bytes | None:
        """One stored piece of a file (None past its end)."""
        return self.store.look(
            partial(table.piece, job=job.id, attempt=attempt, path=path, index=index)
        )

    def pieces(self, job: Job, attempt: int, path: str) -> Iterator[bytes]:
        """The file's pieces, each read in a transaction of its own when it is wanted."""
        index = 0
        while data := self.piece(job, attempt, path, index):
            yield data
            index += 1

    async def archive(self, job: Job, attempt: int) -> AsyncIterator[bytes]:
        """Every received artifact of the attempt as a tar.gz, built in a temporary file by a
        thread; the store is read on the loop only (its write batch is the loop's)."""
        loop = asyncio.get_running_loop()
        found = [a for a in self.listed(job, attempt) if a.sha256 is not None]

        async def piece(path: str, index: int) -> bytes | None:
            return self.piece(job, attempt, path, index)

        def fetch(path: str, index: int) -> bytes | None:
            return asyncio.run_coroutine_threadsafe(piece(path, index), loop).result()

        with tempfile.TemporaryFile() as spool:
            await asyncio.to_thread(_write_archive, job, found, fetch, spool)
            spool.seek(0)
            while data := await asyncio.to_thread(spool.read, ARCHIVE_PIECE):
                yield data


def _write_archive(
    job: Job,
    found: list[Artifact],
    fetch: Callable[[str, int], bytes | None],
    spool: IO[bytes],
) -> None:
    with tarfile.open(fileobj=spool, mode="w:gz") as tar:
        for artifact in found:
            info = tarfile.TarInfo(artifact.path)
            info.size = artifact.size
            info.mode = 0o644
            info.mtime = int(job.ended_at or job.created_at)
            tar.addfile(info, _Pieces(artifact.path, fetch))


class _Pieces:
    """A file's stored pieces, read as a file by tarfile (each fetched when it is wanted)."""

    def __init__(self, path: str, fetch: Callable[[str, int], bytes | None]) -> None:
        self._path = path
        self._fetch = fetch
        self._index = 0
        self._held = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._held) < size:
            piece = self._fetch(self._path, self._index)
            if piece is None:
                break
            self._index += 1
            self._held += piece
        if size < 0:
            size = len(self._held)
        data, self._held = self._held[:size], self._held[size:]
        return data
