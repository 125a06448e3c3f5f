"""The durable store: LMDB with msgpack records; the only module that imports lmdb or msgpack."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import lmdb
import msgpack

from asphalt import log
from asphalt.errors import Conflict, StoreFull, Unavailable
from asphalt.model import Attempt, Job, JobInput, JobState, Project, Role, Run, Task, Worker

T = TypeVar("T")
_log = log.get("asphalt.store")
if TYPE_CHECKING:
    _Txn = lmdb.Transaction[bytes]
_SEP = b"\x00"
_BATCH_ROOM = 64 << 20  # with less free room than this in the map, writes are not grouped
_PATH_PAGES = 8
_DBS = (
    "projects",
    "names",
    "tasks",
    "task_order",
    "jobs",
    "active",
    "output",
    "outmeta",
    "workers",
    "idem",  # Idempotency-Key -> what the first request made
)
CUT_MARKER = "\n[asphalt: output cut at {cap} bytes; the rest of it is not kept]\n"


def _pack(obj: Any) -> bytes:
    return msgpack.packb(dataclasses.asdict(obj), use_bin_type=True)


def _unpack(raw: bytes) -> dict[str, Any]:
    data: dict[str, Any] = msgpack.unpackb(raw, raw=False)
    return data


def _job(raw: bytes) -> Job:
    d = _unpack(raw)
    spec = d["spec"]
    spec["types"] = tuple(spec["types"])
    d["spec"] = JobInput(**spec)
    d["state"] = JobState(d["state"])
    d["role"] = Role(d["role"])
    d["history"] = tuple(Attempt(**{**a, "state": JobState(a["state"])}) for a in d["history"])
    return Job(**d)


def _task(raw: bytes) -> Task:
    d = _unpack(raw)
    d["runs"] = tuple(Run(**r) for r in d["runs"])
    return Task(**d)


def _worker(raw: bytes) -> Worker:
    d = _unpack(raw)
    d["types"] = tuple(d["types"])
    d["runtimes"] = tuple(d["runtimes"])
    return Worker(**d)


def _task_key(project: str, task: str) -> bytes:
    return project.encode() + _SEP + task.encode()


def _order_key(task: Task) -> bytes:
    created_ns = int(task.created_at * 1e9)
    return task.project.encode() + _SEP + struct.pack(">Q", created_ns) + task.id.encode()


def _out_prefix(job_id: str, attempt: int) -> bytes:
    return job_id.encode() + _SEP + struct.pack(">I", attempt)


class Store:
    """Plain records in, plain records out.

    Writes made while an event loop runs are grouped: each write is a child transaction of one
    batch that is committed (with one fsync) when the loop has run everything that was ready with
    it. Reads see the batch, so the master's memory and its reads agree at once; nothing that
    leaves the process may show a write before `flushed()` says its batch is on disk (the HTTP
    layer awaits it before every response). Without a running loop each write commits at once.
    """

    def __init__(self, path: Path, *, map_size: int = 8 << 30) -> None:
        path.mkdir(parents=True, exist_ok=True)
        # LMDB lets two processes share a store; two masters on one store would both dispatch.
        self._lock = (path / "master.lock").open("a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            self._lock.close()
            raise Unavailable(f"another asphalt master is using {path.parent}") from e
        self._env = lmdb.open(str(path), map_size=map_size, max_dbs=len(_DBS), subdir=True)
        self._db = {name: self._env.open_db(name.encode()) for name in _DBS}
        self._batch: _Txn | None = None
        self._batch_done: asyncio.Future[None] | None = None
        self._batch_bound = 0  # how much the open batch may have grown the store, at most
        self._batch_limit = 0
        self._page = int(self._env.stat()["psize"])

    def close(self) -> None:
        if self._batch is not None:
            self._commit()
        self._env.close()
        self._lock.close()

    async def flushed(self) -> None:
        """Return once every write made so far is committed and on disk."""
        if self._batch_done is not None:
            await asyncio.shield(self._batch_done)

    def _write(self, fn: Callable[[_Txn], T]) -> T:
        batch = self._current_batch()
        try:
            if batch is None:
                with self._env.begin(write=True) as txn:
                    return fn(txn)
            # A child transaction: a write that fails leaves nothing behind in the batch.
            with self._env.begin(write=True, parent=batch) as child:
                return fn(child)
        except lmdb.MapFullError as e:
            raise StoreFull() from e

    def _current_batch(self) -> _Txn | None:
        if self._batch is not None and self._batch_bound > self._batch_limit:
            self._commit()  # a big batch goes now, so that its commit is sure to find room
        if self._batch is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return None
            info = self._env.info()
            room = int(info["map_size"]) - (int(info["last_pgno"]) + 1) * self._page
            if room < _BATCH_ROOM:
                # Near full, a commit that finds no room would lose every write in its batch:
                # then each write is committed alone, and one that does not fit is refused.
                return None
            self._batch = self._env.begin(write=True)
            self._batch_done = loop.create_future()
            self._batch_bound, self._batch_limit = 0, room // 2
            # Runs after every callback that is ready now, so one loop turn shares one fsync.
            loop.call_soon(self._commit)
        return self._batch

    def _put(self, txn: _Txn, db: str, key: bytes, value: bytes) -> None:
        txn.put(key, value, db=self._db[db])
        # Copy-on-write: a put may copy each page on its path, and the value needs its own pages.
        self._batch_bound += 2 * (len(key) + len(value)) + _PATH_PAGES * self._page

    def _delete(self, txn: _Txn, db: str, key: bytes) -> None:
        txn.delete(key, db=self._db[db])
        self._batch_bound += _PATH_PAGES * self._page

    def _commit(self) -> None:
        batch, done = self._batch, self._batch_done
        self._batch = self._batch_done = None
        if batch is None:
            return
        try:
            batch.commit()
        except lmdb.Error as e:
            # Memory already holds these writes and nobody was told of them yet: stop, so that
            # a restart rebuilds memory from what the store really holds.
            _log.critical("store_commit_failed", error=str(e), action="stopping the master")
            os._exit(70)
        if done is not None and not done.done():
            done.set_result(None)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[_Txn]:
        """The open batch (so a read sees the writes before it), else a read transaction."""
        if self._batch is not None:
            yield self._batch
        else:
            with self._env.begin() as txn:
                yield txn

    def _put_job(self, txn: _Txn, job: Job) -> None:
        key = job.id.encode()
        self._put(txn, "jobs", key, _pack(job))
        if job.state.terminal:
            self._delete(txn, "active", key)
        else:
            self._put(txn, "active", key, b"")

    # projects

    def made_by(self, key: str) -> tuple[str, str] | None:
        """What the request with this idempotency key made: (project id, task id or "")."""
        with self._reading() as txn:
            raw = txn.get(key.encode(), db=self._db["idem"])
        if raw is None:
            return None
        project, task = msgpack.unpackb(raw)
        return str(project), str(task)

    def _remember(self, txn: _Txn, key: str | None, project: str, task: str) -> None:
        if key is not None:
            self._put(txn, "idem", key.encode(), msgpack.packb((project, task)))

    def create_project(self, project: Project, *, key: str | None = None) -> None:
        def fn(txn: _Txn) -> None:
            if txn.get(project.id.encode(), db=self._db["projects"]) is not None:
                raise Conflict(f"a project with id {project.id!r} exists already", field="id")
            # A project is found by id or name, so neither may be another project's id or name.
            for taken, what, db in (
                (project.name, "name", "names"),
                (project.name, "name", "projects"),
                (project.id, "id", "names"),
            ):
                if txn.get(taken.encode(), db=self._db[db]) is not None:
                    raise Conflict(f"a project is already called {taken!r}", field=what)
            self._put(txn, "projects", project.id.encode(), _pack(project))
            self._put(txn, "names", project.name.encode(), project.id.encode())
            self._remember(txn, key, project.id, "")

        self._write(fn)

    def project(self, id_or_name: str) -> Project | None:
        with self._reading() as txn:
            raw = txn.get(id_or_name.encode(), db=self._db["projects"])
            if raw is None:
                pid = txn.get(id_or_name.encode(), db=self._db["names"])
                raw = txn.get(pid, db=self._db["projects"]) if pid else None
            return Project(**_unpack(raw)) if raw else None

    def projects(self) -> list[Project]:
        with self._reading() as txn:
            cursor = txn.cursor(db=self._db["projects"])
            return [Project(**_unpack(raw)) for _, raw in cursor]

    # tasks and jobs

    def create_task(self, task: Task, jobs: list[Job], *, key: str | None = None) -> None:
        def fn(txn: _Txn) -> None:
            task_key = _task_key(task.project, task.id)
            if txn.get(task_key, db=self._db["tasks"]) is not None:
                raise Conflict(f"task {task.id!r} exists already in this project", field="id")
            self._put(txn, "tasks", task_key, _pack(task))
            self._put(txn, "task_order", _order_key(task), b"")
            self._remember(txn, key, task.project, task.id)
            for job in jobs:
                self._put_job(txn, job)

        self._write(fn)

    def save(self, *, jobs: Sequence[Job] = (), task: Task | None = None) -> None:
        """Store changed jobs (and the task they belong to) in one transaction."""

        def fn(txn: _Txn) -> None:
            if task is not None:
                self._put(txn, "tasks", _task_key(task.project, task.id), _pack(task))
            for job in jobs:
                self._put_job(txn, job)

        self._write(fn)

    def task(self, project: str, task: str) -> Task | None:
        with self._reading() as txn:
            raw = txn.get(_task_key(project, task), db=self._db["tasks"])
            return _task(raw) if raw else None

    def tasks(self, project: str, *, limit: int, before: Task | None = None) -> list[Task]:
        """A project's tasks, newest first, starting after `before`."""
        prefix = project.encode() + _SEP
        with self._reading() as txn:
            cursor = txn.cursor(db=self._db["task_order"])
            if before is not None:
                found = cursor.set_range(_order_key(before))
                found = cursor.prev() if found else cursor.last()
            else:
                found = cursor.set_range(prefix + b"\xff" * 9) and cursor.prev()
                if not found:
                    found = cursor.last()
            result: list[Task] = []
            while found and len(result) < limit:
                key = cursor.key()
                if not key.startswith(prefix):
                    break
                task_id = key[len(prefix) + 8 :]
                raw = txn.get(prefix + task_id, db=self._db["tasks"])
                if raw:
                    result.append(_task(raw))
                found = cursor.prev()
            return result

    def job(self, job_id: str) -> Job | None:
        with self._reading() as txn:
            raw = txn.get(job_id.encode(), db=self._db["jobs"])
            return _job(raw) if raw else None

    def jobs(self, job_ids: list[str]) -> list[Job]:
        with self._reading() as txn:
            raws = [txn.get(j.encode(), db=self._db["jobs"]) for j in job_ids]
            return [_job(raw) for raw in raws if raw]

    def active_jobs(self) -> list[Job]:
        """Every job not yet ended, for rebuilding queues and leases at start-up."""
        with self._reading() as txn:
            keys = list(txn.cursor(db=self._db["active"]).iternext(values=False))
            raws = [txn.get(key, db=self._db["jobs"]) for key in keys]
        return [_job(raw) for raw in raws if raw]

    # output

    def append_output(self, job_id: str, attempt: int, offset: int, data: bytes, cap: int) -> int:
        """Add output received at `offset`, dropping resent bytes; returns the length received.

        Once an attempt's output is cut at the cap nothing more is written for it: later chunks
        are only counted (and that count is not kept, as nothing needs it once the bytes are gone).
        """
        prefix = _out_prefix(job_id, attempt)
        with self._reading() as txn:
            meta = txn.get(prefix, db=self._db["outmeta"])
        if meta is not None:
            received, stored = msgpack.unpackb(meta)
            if stored > cap:
                return max(int(received), offset + len(data))

        def fn(txn: _Txn) -> int:
            meta = txn.get(prefix, db=self._db["outmeta"])
            received, stored = msgpack.unpackb(meta) if meta else (0, 0)
            if offset > received:
                raise Conflict(f"output offset {offset} is past the {received} bytes received")
            fresh = data[received - offset :]
            if not fresh:
                return int(received)
            room = cap - stored
            if room >= 0:  # at exactly the cap the marker still goes in, once
                kept = fresh[:room]
                if len(fresh) > room:
                    kept += CUT_MARKER.format(cap=cap).encode()
                self._put(txn, "output", prefix + struct.pack(">Q", stored), kept)
                stored += len(kept)
            received += len(fresh)
            self._put(txn, "outmeta", prefix, msgpack.packb((received, stored)))
            return int(received)

        return self._write(fn)

    def output_size(self, job_id: str, attempt: int) -> int:
        """How many bytes of the attempt's output are stored."""
        with self._reading() as txn:
            meta = txn.get(_out_prefix(job_id, attempt), db=self._db["outmeta"])
        return int(msgpack.unpackb(meta)[1]) if meta else 0

    def output(self, job_id: str, attempt: int, start: int = 0) -> bytes:
        """The stored output of one attempt from byte `start` on."""
        prefix = _out_prefix(job_id, attempt)
        parts: list[bytes] = []
        with self._reading() as txn:
            cursor = txn.cursor(db=self._db["output"])
            target = prefix + struct.pack(">Q", start)
            if cursor.set_range(target):
                if cursor.key() != target:
                    cursor.prev()  # the chunk holding `start` begins before it
            else:
                cursor.last()
            if not cursor.key().startswith(prefix) and not cursor.set_range(prefix):
                return b""
            for key, value in cursor:
                if not key.startswith(prefix):
                    break
                at = struct.unpack(">Q", key[len(prefix) :])[0]
                end = at + len(value)
                if end > start:
                    parts.append(value[max(0, start - at) :])
        return b"".join(parts)

    # workers

    def save_worker(self, worker: Worker) -> None:
        self._write(lambda txn: self._put(txn, "workers", worker.id.encode(), _pack(worker)))

    def workers(self) -> list[Worker]:
        with self._reading() as txn:
            return [_worker(raw) for _, raw in txn.cursor(db=self._db["workers"])]
