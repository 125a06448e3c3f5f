"""The tables of the store and the records in them: projects, tasks, jobs, output, workers."""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from asphalt import log
from asphalt.errors import Conflict, Unavailable
from asphalt.master.store import keys, migrations, output, records
from asphalt.master.store.batch import Batches, open_env
from asphalt.model.members import Token, Worker
from asphalt.model.records import Job, Project, Task
from asphalt.protocol import Frame

if TYPE_CHECKING:
    from asphalt.master.store.batch import Txn

_SEP = b"\x00"
T = TypeVar("T")
Change = Callable[[migrations.Tables], None]  # more writes for a save's transaction
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
    "secrets",  # job id -> its secrets' values, never part of the job's record or view
    "tokens",  # API tokens, the join token and browser sessions: hashes, never secrets
    "meta",  # the schema version (migrations.py)
    "hooks",  # project, hook id -> a webhook (hooks.py)
    "deliveries",  # hook id, time made, delivery id -> one event sent to it
    "delivery_keys",  # delivery id -> its key in deliveries
    "outbox",  # delivery id -> its key in deliveries, while it is still to be sent
    "schedules",  # project, name -> a schedule (schedules.py)
    "deleting",  # project, task -> nothing, while the task is marked for deletion (retention.py)
    "templates",  # name, version -> one version of a template (templates.py)
    "artifacts",  # job, attempt, path -> a file the job left (artifacts.py)
    "artifact_data",  # job, attempt, path, piece -> its bytes
    "receivers",  # project, kind -> a receiver of git pushes (receivers.py)
    "swarmer",  # project, id -> a job of the Swarmer API (swarmer.py)
    "swarmer_results",  # job, attempt -> what its in-container Swarmer client reported
)
_log = log.get("asphalt.store")


def private(*paths: Path) -> None:
    """Make the store readable by the master's user only (older versions left it open to all;
    a data directory that was there already is left as it is, it may be the working one)."""
    for path in paths:
        if path.exists() and path.stat().st_mode & 0o077:
            path.chmod(0o700 if path.is_dir() else 0o600)


class Store:
    """Plain records in, plain records out; writes are grouped (see Batches)."""

    def __init__(self, path: Path, *, map_size: int = 8 << 30) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # a data dir it makes
        path.mkdir(mode=0o700, exist_ok=True)
        private(path, *(path / name for name in ("data.mdb", "lock.mdb")))
        # LMDB lets two processes share a store; two masters on one store would both dispatch.
        self._lock = (path / "master.lock").open("a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            self._lock.close()
            raise Unavailable(f"another asphalt master is using {path.parent}") from e
        self._env = open_env(path, map_size=map_size, max_dbs=len(_DBS))
        self._db = {name: self._env.open_db(name.encode()) for name in _DBS}
        self._batches = Batches(self._env)
        self.closed = False
        self._write = self._batches.write
        self._reading = self._batches.reading
        self._jobs = records.Decoded(records.job, 4096)
        self._tasks = records.Decoded(records.task, 1024)
        self._projects = records.Decoded(records.project, 256)
        try:
            migrated = self._write(lambda txn: migrations.upgrade(self._tables(txn)))
        except BaseException:
            self.close()
            raise
        if migrated is not None:
            _log.info("store_migrated", was=migrated, now=migrations.SCHEMA, path=str(path))

    def _tables(self, txn: Txn) -> migrations.Tables:
        return migrations.Tables(txn, self._db, self._put, self._delete)

    def close(self) -> None:
        """Close, with every write made so far on disk."""
        self._batches.commit()
        self._env.close()
        self._lock.close()
        self.closed = True

    def usage(self) -> tuple[int, int]:
        """(bytes in use, the map's size): how full the store is."""
        return self._batches.usage()

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Call `fn` once every write made so far is committed (now, if none is pending)."""
        self._batches.after_commit(fn)

    async def flushed(self) -> None:
        """Return once every write made so far is committed and on disk."""
        await self._batches.flushed()

    def _put(self, txn: Txn, db: str, key: bytes, value: bytes) -> None:
        txn.put(key, value, db=self._db[db])
        self._batches.grew(len(key) + len(value))

    def _delete(self, txn: Txn, db: str, key: bytes) -> None:
        txn.delete(key, db=self._db[db])
        self._batches.grew(0)

    def _put_job(self, txn: Txn, job: Job) -> None:
        key = job.id.encode()
        raw = records.pack(job)
        self._put(txn, "jobs", key, raw)
        self._jobs.keep(key, raw, job)  # read back at once, for the answer and the next step
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
        project, task = records.unpack_value(raw)
        return str(project), str(task)

    def _remember(self, txn: Txn, key: str | None, project: str, task: str) -> None:
        if key is not None:
            self._put(txn, "idem", key.encode(), records.pack_value((project, task)))

    def create_project(self, project: Project, *, key: str | None = None) -> None:
        def fn(txn: Txn) -> None:
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
            self._put(txn, "projects", project.id.encode(), records.pack(project))
            self._put(txn, "names", project.name.encode(), project.id.encode())
            self._remember(txn, key, project.id, "")

        self._write(fn)

    def project(self, id_or_name: str) -> Project | None:
        with self._reading() as txn:
            pid = id_or_name.encode()
            raw = txn.get(pid, db=self._db["projects"])
            if raw is None:
                pid = txn.get(pid, db=self._db["names"]) or b""
                raw = txn.get(pid, db=self._db["projects"]) if pid else None
            return self._projects(pid, raw) if raw else None

    def projects(self) -> list[Project]:
        with self._reading() as txn:
            cursor = txn.cursor(db=self._db["projects"])
            return [self._projects(key, raw) for key, raw in cursor]

    # tasks and jobs

    def _put_secrets(self, txn: Txn, secrets: Mapping[str, Mapping[str, str]]) -> None:
        for job_id, values in secrets.items():
            if values:
                self._put(txn, "secrets", job_id.encode(), records.pack_value(dict(values)))

    def secrets(self, job_id: str) -> dict[str, str]:
        """The values of a job's secrets (for its lease only: never for a view)."""
        with self._reading() as txn:
            raw = txn.get(job_id.encode(), db=self._db["secrets"])
        return {str(k): str(v) for k, v in records.unpack_value(raw).items()} if raw else {}

    def create_task(
        self,
        task: Task,
        jobs: list[Job],
        *,
        key: str | None = None,
        secrets: Mapping[str, Mapping[str, str]] | None = None,
        also: Change | None = None,
    ) -> None:
        def fn(txn: Txn) -> None:
            task_key = keys.task_key(task.project, task.id)
            if txn.get(task_key, db=self._db["tasks"]) is not None:
                raise Conflict(f"task {task.id!r} exists already in this project", field="id")
            raw = records.pack(task)
            self._put(txn, "tasks", task_key, raw)
            self._tasks.keep(task_key, raw, task)
            self._put(txn, "task_order", keys.order_key(task), b"")
            self._remember(txn, key, task.project, task.id)
            for job in jobs:
                self._put_job(txn, job)
            self._put_secrets(txn, secrets or {})
            if also is not None:
                also(self._tables(txn))

        self._write(fn)

    def save(
        self,
        *,
        jobs: Sequence[Job] = (),
        task: Task | None = None,
        secrets: Mapping[str, Mapping[str, str]] | None = None,
        also: Change | None = None,
    ) -> None:
        """Store changed jobs (and the task they belong to, new jobs' secrets) in one go, with
        what `also` writes beside them in the same transaction (the outbox)."""

        def fn(txn: Txn) -> None:
            if task is not None:
                self._put(txn, "tasks", keys.task_key(task.project, task.id), records.pack(task))
            for job in jobs:
                self._put_job(txn, job)
            self._put_secrets(txn, secrets or {})
            if also is not None:
                also(self._tables(txn))

        self._write(fn)

    def change(self, fn: Callable[[migrations.Tables], T]) -> T:
        """Write to the tables beside the core's (hooks.py), in the open batch."""
        return self._write(lambda txn: fn(self._tables(txn)))

    def look(self, fn: Callable[[migrations.Tables], T]) -> T:
        """Read those tables (and see the open batch's writes)."""
        with self._reading() as txn:
            return fn(self._tables(txn))

    def task(self, project: str, task: str) -> Task | None:
        with self._reading() as txn:
            key = keys.task_key(project, task)
            raw = txn.get(key, db=self._db["tasks"])
            return self._tasks(key, raw) if raw else None

    def tasks(self, project: str, *, limit: int, before: Task | None = None) -> list[Task]:
        """A project's tasks, newest first, starting after `before`."""
        prefix = project.encode() + _SEP
        with self._reading() as txn:
            cursor = txn.cursor(db=self._db["task_order"])
            if before is not None:
                found = cursor.set_range(keys.order_key(before))
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
                    result.append(self._tasks(prefix + task_id, raw))
                found = cursor.prev()
            return result

    def job(self, job_id: str) -> Job | None:
        with self._reading() as txn:
            key = job_id.encode()
            raw = txn.get(key, db=self._db["jobs"])
            return self._jobs(key, raw) if raw else None

    def jobs(self, job_ids: list[str]) -> list[Job]:
        with self._reading() as txn:
            keys = [j.encode() for j in job_ids]
            raws = [txn.get(key, db=self._db["jobs"]) for key in keys]
            return [self._jobs(key, raw) for key, raw in zip(keys, raws, strict=True) if raw]

    def active_jobs(self) -> list[Job]:
        """Every job not yet ended, for rebuilding queues and leases at start-up."""
        with self._reading() as txn:
            keys = list(txn.cursor(db=self._db["active"]).iternext(values=False))
            raws = [txn.get(key, db=self._db["jobs"]) for key in keys]
        return [records.job(raw) for raw in raws if raw]

    # output

    def append_output(
        self, job_id: str, attempt: int, offset: int, frames: list[Frame], cap: int
    ) -> int:
        """Add output pieces (stream, bytes) received at `offset`, dropping resent bytes;
        returns the length received. Past `cap` the start and the end are kept (output.py)."""
        return self.change(lambda t: output.append(t, job_id, attempt, offset, frames, cap))

    def output_received(self, job_id: str, attempt: int) -> int:
        """How many bytes the attempt printed, kept or not: the offset its output ends at."""
        return self.look(lambda t: output.received(t, job_id, attempt))

    def output(
        self, job_id: str, attempt: int, start: int = 0, *, stream: int | None = None
    ) -> output.Read:
        """The kept output of one attempt from offset `start` on, of one stream or both."""
        return self.look(lambda t: output.read(t, job_id, attempt, start, stream))

    # workers

    def save_worker(self, worker: Worker) -> None:
        self._write(lambda txn: self._put(txn, "workers", worker.id.encode(), records.pack(worker)))

    def workers(self) -> list[Worker]:
        with self._reading() as txn:
            return [records.worker(raw) for _, raw in txn.cursor(db=self._db["workers"])]

    # credentials

    def save_token(self, token: Token) -> None:
        self._write(lambda txn: self._put(txn, "tokens", token.id.encode(), records.pack(token)))

    def delete_tokens(self, ids: Sequence[str]) -> None:
        def fn(txn: Txn) -> None:
            for token_id in ids:
                self._delete(txn, "tokens", token_id.encode())

        self._write(fn)

    def tokens(self) -> list[Token]:
        with self._reading() as txn:
            return [records.token(raw) for _, raw in txn.cursor(db=self._db["tokens"])]
