"""The one door for job state changes: each change is checked against the transition table,
saved (with the task and secrets it comes with), and published as a domain event once the
store has committed it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from asphalt.master import events
from asphalt.master.store import Store
from asphalt.master.store.tables import Change
from asphalt.model.members import Worker
from asphalt.model.records import Job, JobState, Task, TaskStatus, check_transition, task_status

# What else a change writes in its own transaction, given the events it makes: the outbox of
# webhook deliveries (master/hooks.py), set at wiring. Core never knows who it is.
Outbox = Callable[[Sequence[events.Event], Mapping[str, Job], Task | None], Change | None]


class Lifecycle:
    def __init__(self, store: Store, bus: events.Events) -> None:
        self.store = store
        self.events = bus
        self.outbox: Outbox | None = None

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
        happened: list[events.Event] = [events.TaskCreated(task.project, task.id)]
        happened += [self._event(None, job) for job in jobs]
        also = self._also(happened, jobs, task)
        self.store.create_task(task, jobs, key=key, secrets=secrets, also=also)
        for event in happened:
            self.events.publish(event)

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
        happened: list[events.Event] = [self._event(before[job.id], job) for job in jobs]
        changed = {job.id: job for job in jobs}
        # Only a job that ends now can complete its run: one updated after it ended (a late
        # result) must not tell of the completion again.
        ended = {
            (j.project, j.task, j.run)
            for j in jobs
            if j.state.terminal and not ((b := before[j.id]) is not None and b.state.terminal)
        }
        for project, task_id, run in sorted(ended):
            completed = self._completed(project, task_id, run, task, changed)
            if completed is not None:
                happened.append(completed)
        also = self._also(happened, jobs, task)
        self.store.save(jobs=jobs, task=task, secrets=secrets, also=also)
        for event in happened:
            self.events.publish(event)

    def _also(
        self, happened: Sequence[events.Event], jobs: Sequence[Job], task: Task | None
    ) -> Change | None:
        if self.outbox is None:
            return None
        return self.outbox(happened, {job.id: job for job in jobs}, task)

    @staticmethod
    def _event(before: Job | None, job: Job) -> events.JobEvent:
        if before is not None and before.state is job.state:
            return events.JobUpdated(job)
        if job.state is JobState.QUEUED:
            return events.JobQueued(job)
        if job.state is JobState.RUNNING:
            return events.JobStarted(job)
        return events.JobEnded(job)

    def _completed(
        self,
        project: str,
        task_id: str,
        number: int,
        task: Task | None,
        changed: Mapping[str, Job],
    ) -> events.TaskCompleted | None:
        """The run's completion, if these changes complete it (decided before they are saved,
        so that what reports it can be written with them)."""
        task = (
            task if task is not None and task.id == task_id else self.store.task(project, task_id)
        )
        run = task.run_number(number) if task else None
        if run is None:
            return None
        ids = list(run.jobs.values())
        stored = {job.id: job for job in self.store.jobs(ids)}
        jobs = [changed.get(i) or stored[i] for i in ids if i in changed or i in stored]
        status, outcome = task_status(jobs)
        if status is TaskStatus.COMPLETE and outcome is not None:
            return events.TaskCompleted(project, task_id, number, outcome)
        return None

    def worker_joined(self, worker: Worker) -> None:
        self.store.save_worker(worker)
        self.events.publish(events.WorkerJoined(worker))

    def worker_lost(self, worker: Worker, why: str) -> None:
        self.store.save_worker(worker)
        self.events.publish(events.WorkerLost(worker, why))
