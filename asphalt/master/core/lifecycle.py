"""The one door for job state changes: each change is checked against the transition table,
saved (with the task and secrets it comes with), and published as a domain event once the
store has committed it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from asphalt.master import events
from asphalt.master.store import Store
from asphalt.model.records import (
    Job,
    JobState,
    Task,
    TaskStatus,
    Worker,
    check_transition,
    task_status,
)


class Lifecycle:
    def __init__(self, store: Store, bus: events.Events) -> None:
        self.store = store
        self.events = bus

    def create(
        self,
        task: Task,
        jobs: list[Job],
        *,
        key: str | None = None,
        secrets: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """A new task and its first run's jobs."""
        for job in jobs:
            check_transition(None, job)
        self.store.create_task(task, jobs, key=key, secrets=secrets)
        for job in jobs:
            self._publish(None, job)

    def commit(
        self,
        jobs: Sequence[Job],
        *,
        task: Task | None = None,
        secrets: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """Save changed (or new) jobs in one go, each change checked; then tell of them."""
        before = {job.id: self.store.job(job.id) for job in jobs}
        for job in jobs:
            check_transition(before[job.id], job)
        self.store.save(jobs=jobs, task=task, secrets=secrets)
        for job in jobs:
            self._publish(before[job.id], job)
        ended = {(j.project, j.task, j.run) for j in jobs if j.state.terminal}
        for project, task_id, run in sorted(ended):
            self._completed(project, task_id, run, task)

    def _publish(self, before: Job | None, job: Job) -> None:
        if before is not None and before.state is job.state:
            self.events.publish(events.JobUpdated(job))
        elif job.state is JobState.QUEUED:
            self.events.publish(events.JobQueued(job))
        elif job.state is JobState.RUNNING:
            self.events.publish(events.JobStarted(job))
        else:
            self.events.publish(events.JobEnded(job))

    def _completed(self, project: str, task_id: str, number: int, task: Task | None) -> None:
        task = (
            task if task is not None and task.id == task_id else self.store.task(project, task_id)
        )
        run = task.run_number(number) if task else None
        if run is None:
            return
        status, outcome = task_status(self.store.jobs(list(run.jobs.values())))
        if status is TaskStatus.COMPLETE and outcome is not None:
            self.events.publish(events.TaskCompleted(project, task_id, number, outcome))

    def worker_joined(self, worker: Worker) -> None:
        self.store.save_worker(worker)
        self.events.publish(events.WorkerJoined(worker))

    def worker_lost(self, worker: Worker, why: str) -> None:
        self.store.save_worker(worker)
        self.events.publish(events.WorkerLost(worker, why))
