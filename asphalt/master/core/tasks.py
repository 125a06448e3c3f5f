"""Projects, tasks and their graphs: create, rerun (a task, or a job and what is downstream),
jobs added while a run goes on, cancels, and a job's end with the reactions, retries and lost
retries it sets off. Every change goes through the one door (lifecycle.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from asphalt import log
from asphalt.config import MasterConfig
from asphalt.errors import BadRequest, Conflict, NotFound, Unavailable
from asphalt.master.core import reactions
from asphalt.master.core.dispatch import Dispatch
from asphalt.master.core.inputs import JobsInput, TaskInput
from asphalt.master.core.lifecycle import Lifecycle
from asphalt.master.core.placement import placement_reason
from asphalt.master.store import Store
from asphalt.model import graph
from asphalt.model.hook_allow import HookAllow
from asphalt.model.records import Job, JobInput, JobState, Project, Run, Task, new_id, task_status
from asphalt.wire import replace

_log = log.get("asphalt.scheduler")
RETRIED = frozenset({JobState.FAILED, JobState.TIMED_OUT, JobState.LOST})
MAX_BACKOFF_S = 3600.0


class Tasks:
    def __init__(
        self,
        store: Store,
        config: MasterConfig,
        lifecycle: Lifecycle,
        dispatch: Dispatch,
        *,
        now: Callable[[], float],
        now_m: Callable[[], float],
    ) -> None:
        self.store = store
        self.config = config
        self.lifecycle = lifecycle
        self.dispatch = dispatch
        self.now = now
        self.now_m = now_m
        self.hook_allow = HookAllow(config.hook_allow)  # where a task's callback may point

    def _accepting(self) -> None:
        if self.dispatch.closing:
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

    def run_jobs(self, run: Run) -> dict[str, Job]:
        """The run's jobs by name, in the order the run lists them."""
        found = {job.id: job for job in self.store.jobs(list(run.jobs.values()))}
        return {name: found[job_id] for name, job_id in run.jobs.items() if job_id in found}

    def create_task(
        self, project: Project, task_input: TaskInput, *, key: str | None = None
    ) -> Task:
        self._accepting()
        if project.deleting:
            raise Conflict(
                f"project {project.name!r} is being deleted; it takes no new tasks",
                field="project",
            )
        callback = task_input.callback
        if callback is not None:
            self.hook_allow.check(callback.url, field="callback")
        if callback is not None and callback.secret is None and project.callback_secret is None:
            raise BadRequest(
                f'a callback needs a secret to sign it: send {{"url": ..., "secret": ...}}, or '
                f"give project {project.name!r} a callback_secret (PATCH /projects/{project.name})",
                field="callback",
            )
        now = self.now()
        task_id = task_input.id or new_id()
        jobs = self._new_jobs(project.id, task_id, 1, task_input.jobs, now)
        task = Task(
            id=task_id,
            project=project.id,
            created_at=now,
            runs=(Run(number=1, created_at=now, jobs={j.name: j.id for j in jobs}),),
            callback=callback,
        )
        secrets = {j.id: task_input.secrets.get(j.name, {}) for j in jobs}
        self.lifecycle.create(task, jobs, key=key, secrets=secrets)
        _log.debug("task_created", project=project.id, task=task.id, jobs=len(jobs))
        self.dispatch.enqueue_ready(jobs)
        return task

    def _new_jobs(
        self,
        project: str,
        task: str,
        run: int,
        specs: Mapping[str, JobInput],
        now: float,
        *,
        added: bool = False,
    ) -> list[Job]:
        return [
            Job(
                id=new_id(8),
                project=project,
                task=task,
                run=run,
                name=name,
                spec=spec,
                created_at=now,
                ready=not spec.needs,
                added=added,
            )
            for name, spec in specs.items()
        ]

    def rerun_task(self, project: Project, task: Task) -> Task:
        """Run the task's graph again as a new run (jobs added while a run went on are not part
        of it: the jobs that added them add them again)."""
        self._accepting()
        task = self.task(project, task.id)  # as stored now: a caller may hold an older one
        jobs = self.run_jobs(task.current)
        if task_status(jobs.values())[0] != "complete":
            raise Conflict("the task's current run has not ended; cancel it first", field="task")
        now = self.now()
        number = task.current.number + 1
        specs = {name: j.spec for name, j in jobs.items() if not j.added}
        new = self._new_jobs(project.id, task.id, number, specs, now)
        run = Run(number=number, created_at=now, jobs={j.name: j.id for j in new})
        task = replace(task, runs=(*task.runs, run))
        secrets = {j.id: self.store.secrets(jobs[j.name].id) for j in new if j.spec.secrets}
        self.lifecycle.commit(jobs=new, task=task, secrets=secrets)
        _log.info("task_rerun", project=project.id, task=task.id, run=number)
        self.dispatch.enqueue_ready(new)
        return task

    def rerun_job(self, job: Job) -> Job:
        """Run one job again, and then everything downstream of it; the rest keep their ends."""
        project = self.project(job.project)
        task = self.task(project, job.task)
        if task.current.number != job.run:
            raise Conflict(
                "this job belongs to an earlier run; rerun the task instead", field="job"
            )
        jobs = self.run_jobs(task.current)
        if task_status(jobs.values())[0] != "complete":
            raise Conflict("the task's run has not ended; wait for it or cancel it", field="job")
        rerun = replace(job.requeued(), retried=0, lost=0)
        after = graph.downstream({name: j.spec.node for name, j in jobs.items()}, job.name)
        changed = [rerun, *(replace(jobs[n].requeued(ready=False), retried=0) for n in after)]
        self.lifecycle.commit(jobs=changed)
        _log.info("job_rerun", job=job.id, name=job.name, downstream=len(after))
        self.dispatch.enqueue(rerun)
        return rerun

    def add_jobs(self, project: Project, task: Task, given: JobsInput) -> list[Job]:
        """Add jobs to the task's current run while it goes on; those whose needs have all
        ended already are decided at once."""
        self._accepting()
        task = self.task(project, task.id)  # as stored now: a caller may hold an older one
        jobs = self.run_jobs(task.current)
        fresh = self._not_there(jobs, given)
        if not fresh:
            return []  # all of them there already, as described: the same call again
        if task_status(jobs.values())[0] == "complete":
            raise Conflict(
                "the task's run has ended; jobs can be added only while it runs (rerun it, or "
                "create a task)",
                field="task",
            )
        now = self.now()
        new = self._new_jobs(project.id, task.id, task.current.number, fresh, now, added=True)
        every = {**jobs, **{j.name: j for j in new}}
        decided = {j.id: j for j in reactions.advance(every, reactions.starting(jobs), now)}
        new = [decided.get(j.id, j) for j in new]
        run = replace(task.current, jobs={**task.current.jobs, **{j.name: j.id for j in new}})
        task = replace(task, runs=(*task.runs[:-1], run))
        secrets = {j.id: given.secrets.get(j.name, {}) for j in new}
        self.lifecycle.commit(jobs=new, task=task, secrets=secrets)
        _log.info("jobs_added", project=project.id, task=task.id, jobs=len(new))
        self.dispatch.enqueue_ready(new)
        return new

    def _not_there(self, jobs: Mapping[str, Job], given: JobsInput) -> dict[str, JobInput]:
        """The given jobs the run does not have. One it has, described the same (needs in any
        order), is left as it is: a rerun job adds its jobs again. Described otherwise, or with
        secrets (whether their values match would be an answer about them), it is refused."""
        fresh: dict[str, JobInput] = {}
        for name, spec in given.jobs.items():
            there = jobs.get(name)
            if there is None:
                fresh[name] = spec
            elif spec.secrets or there.spec.secrets:
                raise BadRequest(
                    f"the task has a job {name!r} already, and a job with secrets is added once; "
                    "give this one another name",
                    field=f"jobs.{name}",
                )
            elif not _same(there.spec, spec):
                raise BadRequest(
                    f"the task has a job {name!r} already, described otherwise; give this one "
                    "another name",
                    field=f"jobs.{name}",
                )
        return fresh

    def cancel_task(self, task: Task) -> None:
        """Cancel what is queued or running in the task's current run."""
        for job in self.run_jobs(task.current).values():
            self.cancel_job(job)

    def cancel_job(self, job: Job) -> None:
        if job.state is JobState.QUEUED and job.ready:
            self.dispatch.withdraw(job.id)
            self.end(job.to(JobState.CANCELLED, ended_at=self.now(), reason="cancelled by request"))
        elif job.state is JobState.RUNNING and not job.cancel_requested:
            job = replace(job, cancel_requested=True)
            self.lifecycle.commit(jobs=[job])  # its worker hears of it from the event
            _log.info("job_cancel_requested", job=job.id, worker=job.worker)

    def end(self, job: Job, *, retry: bool = True) -> None:
        """Record a job's end with the reactions it sets off, in one commit; then notify.

        An end its retry policy allows again is not an end yet: the job is queued for its next
        attempt after the backoff, and reactions wait for the last attempt (unless `retry` is
        False: it could not run anywhere, and another attempt would not either).
        """
        if job.cancel_requested or not retry:
            pass
        elif job.state is JobState.LOST and job.lost < self.config.lost_retries:
            self._lost_again(job)
            return
        elif job.state in RETRIED and job.retried < job.spec.retries:
            self._retry(job)
            return
        changed = [job]
        task = self.store.task(job.project, job.task)
        run = task.run_number(job.run) if task else None
        if run is not None:
            jobs = self.run_jobs(run)
            jobs[job.name] = job
            changed += reactions.advance(jobs, [job.name], self.now())
        self.lifecycle.commit(jobs=changed)
        self.dispatch.drop(job.id)
        # Each job's story is in its page; the log keeps only the ones that went wrong.
        (_log.debug if job.state is JobState.SUCCEEDED else _log.info)(
            "job_ended", job=job.id, state=job.state, status=job.status, worker=job.worker
        )
        self.dispatch.enqueue_ready(changed[1:])

    def _lost_again(self, lost: Job) -> None:
        """Lost is not failed: a job whose worker was lost runs again at once, its own retries
        untouched, up to -lost-retries times; the lost attempt stays in its history."""
        job = replace(lost.requeued(), lost=lost.lost + 1)
        self.lifecycle.commit(jobs=[job])
        self.dispatch.drop(lost.id)
        _log.info("job_lost_retry", job=job.id, reason=lost.reason, lost=job.lost)
        self.dispatch.enqueue(job)

    def _retry(self, ended: Job) -> None:
        delay = min(ended.spec.backoff * 2**ended.retried, MAX_BACKOFF_S)
        job = replace(ended.requeued(), retried=ended.retried + 1, not_before=self.now() + delay)
        self.lifecycle.commit(jobs=[job])
        self.dispatch.drop(ended.id)
        _log.info("job_retry", job=job.id, ended=ended.state, retry=job.retried, delay_s=delay)
        self.dispatch.enqueue(job)

    def reason(self, job: Job, jobs: Mapping[str, Job] | None = None) -> str | None:
        """Why a queued job is not running, in words a person can act on (`jobs`: its run's)."""
        if job.state is not JobState.QUEUED:
            return None
        if not job.ready:
            return reactions.waiting_reason(job, jobs)
        if job.not_before is not None and job.not_before > self.now():
            wait = job.not_before - self.now()
            last = job.history[-1].state if job.history else "failed"
            return f"retry {job.retried} of {job.spec.retries} after {last}, in {wait:.0f} s"
        live = self.dispatch.registry.live_workers(self.now_m())
        return placement_reason(job, live, self.dispatch)


def _same(a: JobInput, b: JobInput) -> bool:
    """Whether two descriptions are of the same job; the order of needs does not matter."""
    return replace(a, needs=tuple(sorted(a.needs))) == replace(b, needs=tuple(sorted(b.needs)))
