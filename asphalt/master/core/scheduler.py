"""The master's core, composed of services with one job each (tasks and graphs, dispatch,
leases, membership) and the one read model (views), around the one door for state changes
(lifecycle.py) and its events.

It wires them together, wakes whoever waits on a change once it is stored, and rebuilds the
queues and leases from the store at start-up.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from asphalt import log
from asphalt.config import MasterConfig
from asphalt.master import events
from asphalt.master.core.dispatch import Dispatch
from asphalt.master.core.leasing import Leases
from asphalt.master.core.lifecycle import Lifecycle
from asphalt.master.core.membership import Membership
from asphalt.master.core.placement import Unrunnable
from asphalt.master.core.signals import Signals
from asphalt.master.core.tasks import Tasks
from asphalt.master.core.templates import Templates
from asphalt.master.core.workers import Registry
from asphalt.master.store import Store
from asphalt.master.views import Views
from asphalt.model.records import JobState
from asphalt.wire import replace

_log = log.get("asphalt.scheduler")


class Scheduler:
    def __init__(
        self,
        store: Store,
        config: MasterConfig,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        recover: bool = True,
    ) -> None:
        self.store = store
        self.config = config
        self.now = clock
        self.now_m = monotonic
        self.signals = Signals()
        self.events = events.Events(store.after_commit)
        self.lifecycle = Lifecycle(store, self.events)
        self.registry = Registry(store.workers(), lease_s=config.lease_s, now_m=monotonic())
        clocks = {"now": clock, "now_m": monotonic}
        self.dispatch = Dispatch(self.lifecycle, self.registry, config, **clocks)
        self.tasks = Tasks(store, config, self.lifecycle, self.dispatch, **clocks)
        self.templates = Templates(store, now=clock)
        self.unrunnable = Unrunnable(
            self.dispatch,
            lambda job: self.tasks.end(job, retry=False),
            after_s=config.unrunnable_after_s,
            **clocks,
        )
        self.leases = Leases(store, config, self.lifecycle, self.dispatch, self.tasks, self.signals)
        self.workers = Membership(self.leases)
        self.views = Views(store, self.tasks, self.registry)  # the one read model
        self._wake_on_events()
        if recover:  # else the one who wires more onto the core calls recover() after it
            self.recover()

    @property
    def closing(self) -> bool:
        return self.dispatch.closing

    def _wake_on_events(self) -> None:
        """Who waits on a job (a page following its output, a worker's held heartbeat for a
        cancel, a worker that was cut off) is woken by the events, once the change is stored."""

        def job_changed(event: events.JobEvent) -> None:
            self.signals.notify(f"job:{event.job.id}")
            if event.job.cancel_requested and event.job.worker:
                self.signals.notify(f"worker:{event.job.worker}")

        self.events.subscribe(events.JobQueued, job_changed)
        self.events.subscribe(events.JobStarted, job_changed)
        self.events.subscribe(events.JobEnded, job_changed)
        self.events.subscribe(events.JobUpdated, job_changed)
        self.events.subscribe(
            events.WorkerLost, lambda e: self.signals.notify(f"worker:{e.worker.id}")
        )

    def recover(self) -> None:
        """Rebuild queues and leases from the store after a start or a crash."""
        grace = self.now_m() + self.config.lease_s
        active = sorted(self.store.active_jobs(), key=lambda j: j.created_at)
        gone = {w.id: w for w in self.registry.records() if w.embedded and not w.gone}
        for worker in gone.values():  # the master's own worker died with its last process
            self.lifecycle.worker_lost(replace(worker, gone=True), "its master stopped")
            self.registry.update(replace(worker, gone=True))
        for job in active:
            if job.state is JobState.RUNNING and job.worker in gone:
                why = f"its worker {gone[job.worker].name} was the master's own, which stopped"
                self.tasks.end(job.to(JobState.LOST, ended_at=self.now(), reason=why))
            elif job.state is JobState.RUNNING and job.worker:
                self.dispatch.hold(job, grace)
            elif job.state is JobState.QUEUED and job.ready:
                self.dispatch.enqueue(job)
        running = self.dispatch.running_count()
        _log.info("recovered", queued=len(self.dispatch.queues), running=running)

    def close(self) -> None:
        """The master is stopping: answer long-polls and wake every held request now."""
        self.dispatch.close()
        self.signals.notify_all()
