"""The in-memory ready queues (jobs that continue a run first) and the workers long-polling."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from asphalt.model.env_allow import refused
from asphalt.model.members import Worker
from asphalt.model.records import Job


def fits(job: Job, worker: Worker) -> bool:
    """Whether `worker` has every type the job names and the runtime it needs, and lets
    through every variable of its own that the job asks for (-env-allow).

    A worker started with types keeps itself for jobs that ask for them (the gpu box is not
    filled with plain jobs), unless it was also started with -untyped.
    """
    if job.spec.runtime not in worker.runtimes:
        return False
    if job.spec.env_from_host and refused(job.spec.env_from_host, worker.env_allow):
        return False
    if not job.spec.types:
        return not worker.types or worker.untyped
    return set(job.spec.types) <= set(worker.types)


@dataclass(eq=False, slots=True)
class Waiter:
    """One long-poll in flight: a worker with a free slot, waiting to be handed a job."""

    worker: Worker
    future: asyncio.Future[Job] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    # False once the worker's connection is gone, so no job is handed to a dead poll.
    connected: Callable[[], bool] = lambda: True

    def open(self) -> bool:
        return not self.future.done() and self.connected()


class Queues:
    """Ready jobs in arrival order; the truth is in the store, this is rebuilt from it at start."""

    def __init__(self) -> None:
        self._reactions: dict[str, Job] = {}
        self._main: dict[str, Job] = {}
        self._waiters: list[Waiter] = []
        # Whether a job may start now at all (its template's max_running); set by Dispatch.
        self.may_start: Callable[[Job], bool] = lambda job: True

    def __len__(self) -> int:
        return len(self._reactions) + len(self._main)

    def __iter__(self) -> Iterator[Job]:
        yield from self._reactions.values()
        yield from self._main.values()

    def push(self, job: Job) -> Waiter | None:
        """Queue a ready job, or return the waiting worker that should take it at once."""
        for waiter in self._waiters if self.may_start(job) else ():
            if waiter.open() and fits(job, waiter.worker):
                self._waiters.remove(waiter)
                return waiter
        self._waiters = [w for w in self._waiters if w.open()]
        (self._reactions if job.spec.needs else self._main)[job.id] = job
        return None

    def take(self, worker: Worker) -> Job | None:
        """The first queued job this worker can run, jobs that wait on others before the rest."""
        for queue in (self._reactions, self._main):
            for job in queue.values():
                if fits(job, worker) and self.may_start(job):
                    del queue[job.id]
                    return job
        return None

    def startable(self) -> tuple[Job, Waiter] | None:
        """The first queued job that may start now and a waiting worker it fits, both taken
        (after a cap on starting was lifted: a job of a capped template ended). One at a time:
        granting it may close the cap again."""
        for queue in (self._reactions, self._main):
            for job in list(queue.values()):
                if not self.may_start(job):
                    continue
                waiter = next((w for w in self._waiters if w.open() and fits(job, w.worker)), None)
                if waiter is None:
                    continue
                del queue[job.id]
                self._waiters.remove(waiter)
                return job, waiter
        return None

    def wait(self, waiter: Waiter) -> None:
        self._waiters.append(waiter)

    def forget(self, waiter: Waiter) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)

    def remove(self, job_id: str) -> bool:
        found = self._reactions.pop(job_id, None) or self._main.pop(job_id, None)
        return found is not None

    def close(self, worker_id: str | None = None) -> None:
        """Answer waiting long-polls with nothing: every one (the master is stopping), or those
        of one worker (it was revoked)."""
        keep = []
        for waiter in self._waiters:
            if worker_id is not None and waiter.worker.id != worker_id:
                keep.append(waiter)
            elif not waiter.future.done():
                waiter.future.cancel()
        self._waiters = keep
