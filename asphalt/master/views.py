"""The one read model: the JSON views of tasks, jobs and workers that the API and the pages
share, built from the stored records (and, for a queued job, why it waits)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from asphalt.master.core.tasks import Tasks
from asphalt.master.core.workers import Registry
from asphalt.master.store import Store
from asphalt.model import usage
from asphalt.model.records import Job, JobState, Project, Run, Task, rfc3339, task_status

# A job's view carries its output up to this much (its end); /jobs/{id}/output has all it keeps.
OUTPUT_TAIL = 64 << 10


def _whole(job: Job) -> str:
    return f"what is kept of it: /jobs/{job.id}/output, stderr alone: ?stream=stderr"


class Views:
    def __init__(self, store: Store, tasks: Tasks, registry: Registry) -> None:
        self.store = store
        self.tasks = tasks
        self.registry = registry

    def output_text(self, job: Job, *, tail: int = OUTPUT_TAIL, size: int | None = None) -> str:
        """The end of the job's output, at most `tail` bytes, and where the rest is (`size`:
        its output_size, if the caller has it)."""
        size = self.output_size(job) if size is None else size
        start = max(0, size - tail)
        data = self.store.output(job.id, job.attempt, start).data if size else b""
        text = data.decode("utf-8", "replace")
        if start:
            return f"[asphalt: {start} earlier bytes not shown; {_whole(job)}]\n{text}"
        return text

    def output_size(self, job: Job) -> int:
        """How many bytes the job's attempt printed (0 for one not yet run, or queued again)."""
        if job.attempt == 0 or job.state in (JobState.QUEUED, JobState.SKIPPED):
            return 0
        return self.store.output_received(job.id, job.attempt)

    def job(
        self,
        job: Job,
        *,
        output: bool = True,
        tail: int = OUTPUT_TAIL,
        jobs: Mapping[str, Job] | None = None,
    ) -> dict[str, Any]:
        if jobs is None and job.state is JobState.QUEUED and not job.ready:
            task = self.store.task(job.project, job.task)
            run = task.run_number(job.run) if task else None
            jobs = self.tasks.run_jobs(run) if run else None
        size = self.output_size(job) if output else 0
        text = self.output_text(job, tail=tail, size=size) if output else None
        body = job.view(output=text, reason=self.tasks.reason(job, jobs))
        if output:
            body["outputBytes"] = size
            body["outputUrl"] = f"/jobs/{job.id}/output"
        name = self.registry.name(job.worker) if job.worker else None
        if name is not None:
            body["workerName"] = name
        return body

    def workers(
        self, sees: Callable[[Project], bool] | None, *, every: bool = False
    ) -> list[dict[str, Any]]:
        """The workers; with `sees`, each lists only the running jobs of projects it lets
        through (a token limited to some projects does not learn the others' job ids)."""
        views = self.registry.views(self.tasks.now_m(), now=self.tasks.now(), every=every)
        if sees is None:
            return views
        for view in views:
            jobs = self.store.jobs(view["running"])
            projects = {j.project: self.store.project(j.project) for j in jobs}
            view["running"] = [j.id for j in jobs if (p := projects[j.project]) and sees(p)]
        return views

    def run_summary(self, run: Run) -> dict[str, Any]:
        status, outcome = task_status(self.tasks.run_jobs(run).values())
        return {
            "run": run.number,
            "createdAt": rfc3339(run.created_at),
            "status": status,
            "outcome": outcome,
        }

    def task(
        self,
        project: Project,
        task: Task,
        run: Run,
        *,
        output: bool = True,
        changed: Mapping[str, Job] | None = None,
    ) -> dict[str, Any]:
        """The task's view; with `changed` (jobs by id, not yet stored), as it is with them."""
        jobs = self.tasks.run_jobs(run)
        if changed:
            jobs = {
                name: changed.get(job_id) or jobs[name]
                for name, job_id in run.jobs.items()
                if job_id in changed or name in jobs
            }
        status, outcome = task_status(jobs.values())
        started = [j.started_at for j in jobs.values() if j.started_at]
        ended = [j.ended_at for j in jobs.values() if j.ended_at]
        body: dict[str, Any] = {
            "id": task.id,
            "project": project.id,
            "projectName": project.name,
            "run": run.number,
            "runs": len(task.runs),
            "status": status,
            "outcome": outcome,
            "createdAt": rfc3339(task.created_at),
            "runCreatedAt": rfc3339(run.created_at),
            "startedAt": rfc3339(min(started)) if started else None,
            "endedAt": rfc3339(max(ended)) if ended and status == "complete" else None,
            "jobs": {name: self.job(job, output=output, jobs=jobs) for name, job in jobs.items()},
        }
        # What the run cost: every attempt of its jobs that ran, earlier ones too.
        body["bill"] = usage.total(
            usage.bill(a.usage, waited_s=a.waited, started=a.started_at, ended=a.ended_at)
            for job in jobs.values()
            for a in (*job.history, job.last_attempt() if job.attempt else None)
            if a is not None and a.state.terminal and a.started_at is not None
        )
        if output and len(task.runs) > 1:
            body["history"] = [self.run_summary(r) for r in reversed(task.runs)]
        if task.callback is not None:  # its secret is never shown
            body["callback"] = {
                "url": task.callback.url,
                "deliveries": f"/projects/{project.name}/tasks/{task.id}/deliveries",
            }
        return body
