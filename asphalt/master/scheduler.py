"""The one door for job state changes: create, lease, finish, lose, cancel, rerun.

Every change is committed to the store first; only then are queues, waiting workers and
output followers told (persist, then notify).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace

from asphalt import log
from asphalt.config import MasterConfig
from asphalt.errors import Conflict, NotFound, Unavailable
from asphalt.master import reactions
from asphalt.master.inputs import TaskInput
from asphalt.master.leasing import Held, Leasing
from asphalt.master.queues import Queues, fits
from asphalt.master.signals import Signals
from asphalt.master.store import Store
from asphalt.master.workers import Registry
from asphalt.model import (
    Job,
    JobInput,
    JobState,
    Project,
    Role,
    Run,
    Task,
    new_id,
    task_status,
)

_log = log.get("asphalt.scheduler")
RETRIED = frozenset({JobState.FAILED, JobState.TIMED_OUT, JobState.LOST})
MAX_BACKOFF_S = 3600.0


class Scheduler(Leasing):
    def __init__(
        self,
        store: Store,
        config: MasterConfig,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.config = config
        self.now = clock
        self.now_m = monotonic
        self.queues = Queues()
        self.signals = Signals()
        self.registry = Registry(store.workers(), lease_s=config.lease_s, now_m=monotonic())
        self._leases: dict[str, Held] = {}
        self._chained: dict[tuple[str, int], str] = {}  # finished (job, attempt) -> next job
        self.closing = False
        self._delayed: dict[str, Job] = {}
        self._recover()

    def _recover(self) -> None:
        """Rebuild queues and leases from the store after a start or a crash."""
        grace = self.now_m() + self.config.lease_s
        active = sorted(self.store.active_jobs(), key=lambda j: j.created_at)
        for job in active:
            if job.state is JobState.RUNNING and job.worker:
                self._leases[job.id] = Held(job.worker, job.attempt, grace)
                self.registry.running.setdefault(job.worker, set()).add(job.id)
            elif job.state is JobState.QUEUED and job.ready:
                self._enqueue(job)
        _log.info("recovered", queued=len(self.queues), running=len(self._leases))

    # projects and tasks

    def _accepting(self) -> None:
        if self.closing:
            raise Unavailable("the master is stopping; send it again once it is back")

    def create_project(self, name: str, pid: str | None, *, key: str | None = None) -> Project:
        self._accepting()
        project = Project(id=pid or new_id(), name=name, created_at=self.now())
        self.store.create_project(project, key=key)
        _log.info("project_created", project=project.id, name=name)
        return project

    def project(self, id_or_name: str) -> Project:
        project = self.store.project(id_or_name)
        if project is None:
            raise NotFound(f"no project {id_or_name!r}; list them with GET /", field="project")
        return project

    def task(self, project: Project, task_id: str) -> Task:
        task = self.store.task(project.id, task_id)
        if task is None:
            raise NotFound(f"no task {task_id!r} in project {project.name!r}", field="task")
        return task

    def job(self, job_id: str) -> Job:
        job = self.store.job(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}", field="job")
        return job

    def run_jobs(self, run: Run) -> dict[Role, Job]:
        return {job.role: job for job in self.store.jobs(list(run.jobs.values()))}

    def create_task(
        self, project: Project, task_input: TaskInput, *, key: str | None = None
    ) -> Task:
        self._accepting()
        now = self.now()
        task_id = task_input.id or new_id()
        jobs = self._new_jobs(project.id, task_id, 1, task_input.jobs, now)
        task = Task(
            id=task_id,
            project=project.id,
            created_at=now,
            runs=(Run(number=1, created_at=now, jobs={j.role: j.id for j in jobs}),),
        )
        secrets = {j.id: task_input.secrets.get(j.role, {}) for j in jobs}
        self.store.create_task(task, jobs, key=key, secrets=secrets)
        _log.debug("task_created", project=project.id, task=task.id, jobs=len(jobs))
        self._enqueue(jobs[0])
        return task

    def _new_jobs(
        self, project: str, task: str, run: int, specs: Mapping[Role, JobInput], now: float
    ) -> list[Job]:
        jobs = []
        for role in Role:  # main first
            spec = specs.get(role)
            if spec is None:
                continue
            jobs.append(
                Job(
                    id=new_id(8),
                    project=project,
                    task=task,
                    run=run,
                    role=role,
                    spec=spec,
                    created_at=now,
                    ready=role is Role.MAIN,
                )
            )
        return jobs

    def rerun_task(self, project: Project, task: Task) -> Task:
        self._accepting()
        jobs = self.run_jobs(task.current)
        if task_status(jobs.values())[0] != "complete":
            raise Conflict("the task's current run has not ended; cancel it first", field="task")
        now = self.now()
        number = task.current.number + 1
        new = self._new_jobs(project.id, task.id, number, {r: j.spec for r, j in jobs.items()}, now)
        run = Run(number=number, created_at=now, jobs={j.role: j.id for j in new})
        task = replace(task, runs=(*task.runs, run))
        secrets = {j.id: self.store.secrets(jobs[j.role].id) for j in new if j.spec.secrets}
        self.store.save(jobs=new, task=task, secrets=secrets)
        _log.info("task_rerun", project=project.id, task=task.id, run=number)
        self._enqueue(new[0])
        return task

    def rerun_job(self, job: Job) -> Job:
        project = self.project(job.project)
        task = self.task(project, job.task)
        if task.current.number != job.run:
            raise Conflict(
                "this job belongs to an earlier run; rerun the task instead", field="job"
            )
        jobs = self.run_jobs(task.current)
        if task_status(jobs.values())[0] != "complete":
            raise Conflict("the task's run has not ended; wait for it or cancel it", field="job")
        rerun = replace(job.requeued(), retried=0)
        changed = [rerun]
        if job.role is Role.MAIN:  # the run plays out again: its reactions wait for main anew
            changed += [j.requeued(ready=False) for r, j in jobs.items() if r is not Role.MAIN]
        self.store.save(jobs=changed)
        _log.info("job_rerun", job=job.id, role=job.role)
        self._enqueue(rerun)
        return rerun

    def cancel_task(self, task: Task) -> None:
        """Cancel what is queued or running in the task's current run."""
        for job in self.run_jobs(task.current).values():
            self.cancel_job(job)

    def cancel_job(self, job: Job) -> None:
        if job.state is JobState.QUEUED and job.ready:
            self.queues.remove(job.id)
            self._delayed.pop(job.id, None)
            self._end(
                job.to(JobState.CANCELLED, ended_at=self.now(), reason="cancelled by request")
            )
        elif job.state is JobState.RUNNING and not job.cancel_requested:
            job = replace(job, cancel_requested=True)
            self.store.save(jobs=[job])
            _log.info("job_cancel_requested", job=job.id, worker=job.worker)
            self.signals.notify(f"worker:{job.worker}")

    def _end(self, job: Job) -> None:
        """Record a job's end with the reactions it sets off, in one commit; then notify.

        An end its retry policy allows again is not an end yet: the job is queued for its next
        attempt after the backoff, and reactions wait for the last attempt.
        """
        if job.state in RETRIED and job.retried < job.spec.retries and not job.cancel_requested:
            self._retry(job)
            return
        changed = [job]
        task = self.store.task(job.project, job.task)
        run = task.run_number(job.run) if task else None
        if run is not None:
            jobs = self.run_jobs(run)
            jobs[job.role] = job
            changed += reactions.advance(jobs, job, self.now())
        self.store.save(jobs=changed)
        self._drop_lease(job)
        # Each job's story is in its page; the log keeps only the ones that went wrong.
        (_log.debug if job.state is JobState.SUCCEEDED else _log.info)(
            "job_ended", job=job.id, state=job.state, status=job.status, worker=job.worker
        )
        self.signals.notify(f"job:{job.id}")
        for other in changed[1:]:
            self.signals.notify(f"job:{other.id}")
            if other.state is JobState.QUEUED:
                self._enqueue(other)

    def _retry(self, ended: Job) -> None:
        delay = min(ended.spec.backoff * 2**ended.retried, MAX_BACKOFF_S)
        job = replace(ended.requeued(), retried=ended.retried + 1, not_before=self.now() + delay)
        self.store.save(jobs=[job])
        self._drop_lease(ended)
        _log.info("job_retry", job=job.id, ended=ended.state, retry=job.retried, delay_s=delay)
        self.signals.notify(f"job:{job.id}")
        self._enqueue(job)

    def _enqueue(self, job: Job) -> None:
        """A ready job goes to the queues at once, or waits out its retry backoff first."""
        if job.not_before is not None and job.not_before > self.now():
            self._delayed[job.id] = job
        else:
            self._dispatch(job)

    def promote_due(self) -> None:
        """Queue the retries whose backoff is over (the reaper calls this every second)."""
        now = self.now()
        for job_id, job in list(self._delayed.items()):
            if job.not_before is None or job.not_before <= now:
                del self._delayed[job_id]
                self._dispatch(job)

    def reason(self, job: Job) -> str | None:
        """Why a queued job is not running, in words a person can act on."""
        if job.state is not JobState.QUEUED:
            return None
        if not job.ready:
            return reactions.waiting_reason(job)
        if job.not_before is not None and job.not_before > self.now():
            wait = job.not_before - self.now()
            last = job.history[-1].state if job.history else "failed"
            return f"retry {job.retried} of {job.spec.retries} after {last}, in {wait:.0f} s"
        live = self.registry.live_workers(self.now_m())
        spec = job.spec
        if not live:
            return "no live worker; start one with: asphalt -master HOST:PORT"
        if spec.types and not any(set(spec.types) <= set(w.types) for w in live):
            return f"no live worker has types {', '.join(spec.types)}"
        if not spec.types and all(w.types and not w.untyped for w in live):
            return "every live worker has types and takes only jobs that ask for them (-untyped)"
        if not any(fits(job, w) for w in live):
            return f"no live worker that fits it has the {spec.runtime} runtime"
        return "waiting for a free slot"

    def running_count(self) -> int:
        return len(self._leases)

    def close(self) -> None:
        """The master is stopping: answer long-polls and wake every held request now."""
        self.closing = True
        self.queues.close()
        self.signals.notify_all()
