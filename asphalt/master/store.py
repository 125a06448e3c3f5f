"""The durable store: LMDB with msgpack records; the only module that imports lmdb or msgpack."""

from __future__ import annotations

import dataclasses
import fcntl
import struct
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import lmdb
import msgpack

from asphalt.errors import Conflict, StoreFull, Unavailable
from asphalt.model import Attempt, Job, JobInput, JobState, Project, Role, Run, Task, Worker

T = TypeVar("T")
_SEP = b"\x00"
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
    """Plain records in, plain records out; every write is one LMDB transaction."""

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

    def close(self) -> None:
        self._env.close()
        self._lock.close()

    def _write(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        try:
            with self._env.begin(write=True) as txn:
                return fn(txn)
        except lmdb.MapFullError as e:
            raise StoreFull() from e

    def _put_job(self, txn: lmdb.Transaction, job: Job) -> None:
        key = job.id.encode()
        txn.put(key, _pack(job), db=self._db["jobs"])
        if job.state.terminal:
            txn.delete(key, db=self._db["active"])
        else:
            txn.put(key, b"", db=self._db["active"])

    # projects

    def made_by(self, key: str) -> tuple[str, str] | None:
        """What the request with this idempotency key made: (project id, task id or "")."""
        with self._env.begin() as txn:
            raw = txn.get(key.encode(), db=self._db["idem"])
        if raw is None:
            return None
        project, task = msgpack.unpackb(raw)
        return str(project), str(task)

    def _remember(self, txn: lmdb.Transaction, key: str | None, project: str, task: str) -> None:
        if key is not None:
            txn.put(key.encode(), msgpack.packb((project, task)), db=self._db["idem"])

    def create_project(self, project: Project, *, key: str | None = None) -> None:
        def fn(txn: lmdb.Transaction) -> None:
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
            txn.put(project.id.encode(), _pack(project), db=self._db["projects"])
            txn.put(project.name.encode(), project.id.encode(), db=self._db["names"])
            self._remember(txn, key, project.id, "")

        self._write(fn)

    def project(self, id_or_name: str) -> Project | None:
        with self._env.begin() as txn:
            raw = txn.get(id_or_name.encode(), db=self._db["projects"])
            if raw is None:
                pid = txn.get(id_or_name.encode(), db=self._db["names"])
                raw = txn.get(pid, db=self._db["projects"]) if pid else None
            return Project(**_unpack(raw)) if raw else None

    def projects(self) -> list[Project]:
        with self._env.begin() as txn:
            cursor = txn.cursor(db=self._db["projects"])
            return [Project(**_unpack(raw)) for _, raw in cursor]

    # tasks and jobs

    def create_task(self, task: Task, jobs: list[Job], *, key: str | None = None) -> None:
        def fn(txn: lmdb.Transaction) -> None:
            task_key = _task_key(task.project, task.id)
            if txn.get(task_key, db=self._db["tasks"]) is not None:
                raise Conflict(f"task {task.id!r} exists already in this project", field="id")
            txn.put(task_key, _pack(task), db=self._db["tasks"])
            txn.put(_order_key(task), b"", db=self._db["task_order"])
            self._remember(txn, key, task.project, task.id)
            for job in jobs:
                self._put_job(txn, job)

        self._write(fn)

    def save(self, *, jobs: Sequence[Job] = (), task: Task | None = None) -> None:
        """Store changed jobs (and the task they belong to) in one transaction."""

        def fn(txn: lmdb.Transaction) -> None:
            if task is not None:
                txn.put(_task_key(task.project, task.id), _pack(task), db=self._db["tasks"])
            for job in jobs:
                self._put_job(txn, job)

        self._write(fn)

    def task(self, project: str, task: str) -> Task | None:
        with self._env.begin() as txn:
            raw = txn.get(_task_key(project, task), db=self._db["tasks"])
            return _task(raw) if raw else None

    def tasks(self, project: str, *, limit: int, before: Task | None = None) -> list[Task]:
        """A project's tasks, newest first, starting after `before`."""
        prefix = project.encode() + _SEP
        with self._env.begin() as txn:
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
        with self._env.begin() as txn:
            raw = txn.get(job_id.encode(), db=self._db["jobs"])
            return _job(raw) if raw else None

    def jobs(self, job_ids: list[str]) -> list[Job]:
        with self._env.begin() as txn:
            raws = [txn.get(j.encode(), db=self._db["jobs"]) for j in job_ids]
            return [_job(raw) for raw in raws if raw]

    def active_jobs(self) -> Iterator[Job]:
        """Every job not yet ended, for rebuilding queues and leases at start-up."""
        with self._env.begin() as txn:
            for key in txn.cursor(db=self._db["active"]).iternext(values=False):
                raw = txn.get(key, db=self._db["jobs"])
                if raw:
                    yield _job(raw)

    # output

    def append_output(self, job_id: str, attempt: int, offset: int, data: bytes, cap: int) -> int:
        """Add output received at `offset`, dropping resent bytes; returns the length received."""

        def fn(txn: lmdb.Transaction) -> int:
            prefix = _out_prefix(job_id, attempt)
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
                txn.put(prefix + struct.pack(">Q", stored), kept, db=self._db["output"])
                stored += len(kept)
            received += len(fresh)
            txn.put(prefix, msgpack.packb((received, stored)), db=self._db["outmeta"])
            return int(received)

        return self._write(fn)

    def output_size(self, job_id: str, attempt: int) -> int:
        """How many bytes of the attempt's output are stored."""
        with self._env.begin() as txn:
            meta = txn.get(_out_prefix(job_id, attempt), db=self._db["outmeta"])
        return int(msgpack.unpackb(meta)[1]) if meta else 0

    def output(self, job_id: str, attempt: int, start: int = 0) -> bytes:
        """The stored output of one attempt from byte `start` on."""
        prefix = _out_prefix(job_id, attempt)
        parts: list[bytes] = []
        with self._env.begin() as txn:
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
        self._write(lambda txn: txn.put(worker.id.encode(), _pack(worker), db=self._db["workers"]))

    def workers(self) -> list[Worker]:
        with self._env.begin() as txn:
            return [_worker(raw) for _, raw in txn.cursor(db=self._db["workers"])]
