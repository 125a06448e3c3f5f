"""Dispatch: which ready job goes to which worker. It owns the ready queues and the workers
waiting on them, the retries waiting out their backoff, and the book of leases handed out."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from asphalt import log
from asphalt.config import MasterConfig
from asphalt.master.core.lifecycle import Lifecycle
from asphalt.master.core.queues import Queues
from asphalt.master.core.workers import Registry
from asphalt.model.members import Worker
from asphalt.model.records import Job, JobState

_log = log.get("asphalt.scheduler")


@dataclass(slots=True)
class Held:
    """A lease in memory: which worker holds which attempt, and until when (monotonic)."""

    worker: str
    attempt: int
    deadline_m: float
    template: str | None = None  # counted against its max_running while it runs


class Dispatch:
    def __init__(
        self,
        lifecycle: Lifecycle,
        registry: Registry,
        config: MasterConfig,
        *,
        now: Callable[[], float],
        now_m: Callable[[], float],
    ) -> None:
        self.lifecycle = lifecycle
        self.registry = registry
        self.config = config
        self.now = now
        self.now_m = now_m
        self.queues = Queues()
        self.closing = False
        self._leases: dict[str, Held] = {}  # job id -> the lease on its running attempt
        self._delayed: dict[str, Job] = {}
        self.running_of: dict[str, int] = {}  # template -> its jobs running now
        self._ready_at: dict[str, float] = {}  # job id -> when it was queued for a worker
        self.queues.may_start = self.may_start

    def may_start(self, job: Job) -> bool:
        """Whether the job's template (if it caps its jobs) has room for one more."""
        cap, template = job.spec.max_running, job.spec.template
        return cap is None or template is None or self.running_of.get(template, 0) < cap

    def enqueue(self, job: Job) -> None:
        """A ready job goes to the queues at once, or waits out its retry backoff first."""
        if job.not_before is not None and job.not_before > self.now():
            self._delayed[job.id] = job
        else:
            self._hand_out(job)

    def enqueue_ready(self, jobs: Iterable[Job]) -> None:
        for job in jobs:
            if job.state is JobState.QUEUED and job.ready:
                self.enqueue(job)

    def _hand_out(self, job: Job) -> None:
        """Hand a ready job to a waiting worker that fits, or queue it."""
        self._ready_at[job.id] = self.now()
        waiter = self.queues.push(job)
        if waiter is not None:
            waiter.future.set_result(self.grant(job, waiter.worker))

    def promote_due(self) -> None:
        """Queue the retries whose backoff is over (the reaper calls this every second)."""
        now = self.now()
        for job_id, job in list(self._delayed.items()):
            if job.not_before is None or job.not_before <= now:
                del self._delayed[job_id]
                self._hand_out(job)

    def withdraw(self, job_id: str) -> None:
        """A queued job will not run (it was cancelled): out of the queues and the backoff."""
        self.queues.remove(job_id)
        self._delayed.pop(job_id, None)
        self._ready_at.pop(job_id, None)

    def grant(self, job: Job, worker: Worker) -> Job:
        """Lease the job's next attempt to the worker: stored as running, then booked."""
        now = self.now()
        ready_at = self._ready_at.pop(job.id, None)
        job = job.to(
            JobState.RUNNING,
            worker=worker.id,
            attempt=job.attempt + 1,
            started_at=now,
            reason=None,
            waited=None if ready_at is None else max(0.0, now - ready_at),
        )
        self.lifecycle.commit(jobs=[job])
        self.hold(job, self.now_m() + self.config.lease_s)
        _log.debug("job_leased", job=job.id, worker=worker.id, attempt=job.attempt)
        return job

    def hold(self, job: Job, deadline_m: float) -> None:
        """Book a running attempt's lease (on a grant, or found running at start-up)."""
        assert job.worker is not None
        template = job.spec.template if job.spec.max_running is not None else None
        self._leases[job.id] = Held(job.worker, job.attempt, deadline_m, template)
        self.registry.running.setdefault(job.worker, set()).add(job.id)
        if template is not None:
            self.running_of[template] = self.running_of.get(template, 0) + 1

    def drop(self, job_id: str) -> None:
        """The job's attempt is over (or back in the queue): its lease frees its slot."""
        held = self._leases.pop(job_id, None)
        if held is not None:
            self.registry.running.get(held.worker, set()).discard(job_id)
        if held is not None and held.template is not None:
            self.running_of[held.template] -= 1
            while (found := self.queues.startable()) is not None:  # its room, to one waiting
                job, waiter = found
                waiter.future.set_result(self.grant(job, waiter.worker))

    def renew(self, job_id: str, worker_id: str, attempt: int) -> bool:
        """Extend the lease on this attempt by one lease time, if this worker holds it."""
        held = self.holder(job_id, worker_id)
        if held is None or held.attempt != attempt:
            return False
        held.deadline_m = self.now_m() + self.config.lease_s
        return True

    def holder(self, job_id: str, worker_id: str) -> Held | None:
        """The lease on the job, if this worker holds it."""
        held = self._leases.get(job_id)
        return held if held is not None and held.worker == worker_id else None

    def expired(self) -> list[tuple[str, Held]]:
        """The leases whose deadline has passed (still booked until dropped)."""
        now_m = self.now_m()
        return [(job_id, h) for job_id, h in self._leases.items() if h.deadline_m <= now_m]

    def running_ids(self) -> list[str]:
        """The jobs running under a lease now."""
        return list(self._leases)

    def running_count(self) -> int:
        return len(self._leases)

    def close(self) -> None:
        """No more leases: every long-poll is answered now."""
        self.closing = True
        self.queues.close()
