"""Workers joining, leaving and being cut off; what they held runs elsewhere."""

from __future__ import annotations

from asphalt import log
from asphalt.errors import NotFound
from asphalt.master.core.leasing import Leases
from asphalt.model.members import Worker
from asphalt.model.records import JobState
from asphalt.protocol import Registration
from asphalt.wire import replace

_log = log.get("asphalt.scheduler")


class Membership:
    def __init__(self, leases: Leases) -> None:
        self.leases = leases
        self.dispatch = leases.dispatch
        self.registry = leases.dispatch.registry
        self.lifecycle = leases.lifecycle
        self.store = leases.store
        self.now = leases.now
        self.now_m = leases.now_m

    def register(self, reg: Registration, secret_hash: str, *, embedded: bool = False) -> Worker:
        """A new worker, whose credential is the secret behind `secret_hash`."""
        worker = self.registry.new(reg, now=self.now(), secret_hash=secret_hash, embedded=embedded)
        self.lifecycle.worker_joined(worker)
        self.registry.add(worker, now_m=self.now_m())
        _log.info("worker_registered", worker=worker.id, name=worker.name, types=worker.types)
        return worker

    def worker(self, worker_id: str) -> Worker:
        worker = self.registry.get(worker_id)
        if worker is None:
            raise NotFound(f"unknown worker {worker_id!r}; register again", field="worker")
        return worker

    def revoke(self, worker_id: str) -> Worker:
        """Cut a worker off: its credential is refused from now on and its jobs run elsewhere
        (handed back as a stopping worker's are, so no retry is used up)."""
        worker = self.registry.record(worker_id)
        if worker is None:
            raise NotFound(f"no worker {worker_id!r}; list them with GET /workers", field="worker")
        revoked = replace(worker, revoked=True, last_seen=self.now())
        self.lifecycle.worker_lost(revoked, "revoked")
        self.registry.update(revoked)
        self.dispatch.queues.close(worker.id)
        why = f"its worker {worker.name} was revoked"
        for job in self.store.jobs(sorted(self.registry.running.get(worker.id, ()))):
            if job.state is JobState.RUNNING and job.worker == worker.id:
                self.leases.hand_back(job, why)
        _log.warning("worker_revoked", worker=worker.id, name=worker.name)
        return revoked

    def deregister(self, worker: Worker) -> None:
        """A worker leaves for good; whatever it still held ends now instead of at lease expiry."""
        gone = replace(worker, gone=True, last_seen=self.now())
        self.lifecycle.worker_lost(gone, "left")
        self.registry.update(gone)
        for job in self.store.jobs(sorted(self.registry.running.get(worker.id, ()))):
            if job.state is JobState.RUNNING:
                why = f"worker {worker.id} left while running it"
                self.leases.tasks.end(job.to(JobState.LOST, ended_at=self.now(), reason=why))
        _log.info("worker_deregistered", worker=worker.id)
