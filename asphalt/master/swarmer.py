"""The Swarmer API's service: a Swarmer job submitted (with its tasks, or the tasks after), its
status document, what its in-container client reports, and the document its callback carries.
Each Swarmer job is a task of one project (`swarmer`, or -swarmer-project) whose jobs are its
Swarmer tasks; the task's callback goes through the webhook outbox like any other."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from asphalt import log
from asphalt.errors import BadRequest, Conflict, NotFound
from asphalt.master.core.inputs import JobsInput, TaskInput
from asphalt.master.core.scheduler import Scheduler
from asphalt.master.store import swarmer as table
from asphalt.master.store.retention import save_project
from asphalt.model import swarmer as model
from asphalt.model.records import (
    Callback,
    Job,
    JobInput,
    JobState,
    Project,
    Task,
    TaskStatus,
    new_id,
    task_status,
)
from asphalt.model.swarmer import Reported, SubmitBody, SwarmerJob, TasksBody
from asphalt.protocol import STDERR, STDOUT
from asphalt.wire import replace

_log = log.get("asphalt.swarmer")
MAX_ID = 128  # the ids it makes are 16; a longer one is no job (and no key the store takes)


class Swarmer:
    def __init__(
        self,
        scheduler: Scheduler,
        *,
        project: str = "swarmer",
        runtime: str = "docker",
        now: Callable[[], float] = time.time,
    ) -> None:
        self.scheduler = scheduler
        self.store = scheduler.store
        self.tasks = scheduler.tasks
        self.project_name = project
        self.runtime = runtime  # what its jobs run in: docker, or swarm (-swarmer-runtime)
        self.now = now

    def project(self) -> Project:
        """The project Swarmer jobs are tasks of, made on first use with a callback secret (its
        callbacks are signed with it; an admin may set another with PATCH /projects/NAME)."""
        found = self.store.project(self.project_name)
        if found is None:
            found = self.tasks.create_project(self.project_name, None)
            _log.info("swarmer_project_made", project=found.id, name=found.name)
        if found.callback_secret is None:
            found = replace(found, callback_secret=secrets.token_urlsafe(32))
            self.store.change(partial(save_project, project=found))
        return found

    def submit(self, body: Any) -> str:
        """A new Swarmer job; its id. With tasks they are queued now; without, it waits for
        them (POST /submit/{id}/tasks). Everything is checked before anything is made."""
        given = model.read(body, SubmitBody)
        self.tasks.hook_allow.check(given.callback_url, field="callback_url")
        tasks = model.tasks_of(given.tasks or [])
        job_id = new_id(8)
        jobs = self._jobs(job_id, given.image_name, tasks, 0)
        project = self.project()
        record = SwarmerJob(
            id=job_id,
            project=project.id,
            image=given.image_name,
            callback_url=given.callback_url,
            created_at=self.now(),
        )
        # The record first, in the same batch as the task (no await between them), so that a
        # task never runs without it; taken back if the task is refused.
        self.store.change(partial(table.put, job=record))
        if jobs:
            try:
                self._create(project, record, jobs)
            except BaseException:
                self.store.change(partial(table.delete, project=project.id, job_id=job_id))
                raise
        _log.info("swarmer_submitted", job=record.id, tasks=len(jobs))
        return record.id

    def add_tasks(self, job_id: str, body: Any) -> int:
        """Tasks for a job submitted without them (or more, while its tasks run); how many of
        them are new."""
        record = self.find(job_id)
        given = model.tasks_of(model.read(body, TasksBody).tasks)
        project = self.tasks.project(record.project)
        task = self.store.task(project.id, record.id)
        there = self.tasks.run_jobs(task.current) if task is not None else {}
        jobs = self._jobs(record.id, record.image, given, len(there))
        if task is None:
            return len(self._create(project, record, jobs).current.jobs)
        if task_status(there.values())[0] is TaskStatus.COMPLETE:
            raise Conflict(
                f"every task of job {record.id} has ended and its results were sent; submit a "
                "new job for more tasks",
                field="tasks",
            )
        return len(self.tasks.add_jobs(project, task, JobsInput(jobs=jobs, secrets={})))

    def _create(self, project: Project, record: SwarmerJob, jobs: dict[str, JobInput]) -> Task:
        callback = Callback(url=record.callback_url, shape="swarmer")
        made = TaskInput(id=record.id, jobs=jobs, secrets={}, callback=callback)
        return self.tasks.create_task(project, made)

    def _jobs(
        self, job_id: str, image: str, given: list[model.TaskBody], there: int
    ) -> dict[str, JobInput]:
        if there + len(given) > model.MAX_TASKS:
            raise BadRequest(f"a job has at most {model.MAX_TASKS} tasks", field="tasks")
        jobs: dict[str, JobInput] = {}
        for i, task in enumerate(given):
            name = task.task_name
            if name in jobs:
                raise BadRequest(
                    f"tasks.{i}.task_name: {name!r} is given twice; name each task apart",
                    field=f"tasks.{i}.task_name",
                )
            # What Swarmer set for its in-container client, so that its images keep working.
            env = {"TASK_NAME": name, "SWARMER_JOB_ID": job_id}
            if task.task_args:
                env["RUN_ARGS"] = ",".join(task.task_args)
            jobs[name] = JobInput(
                action=list(task.task_args),
                container=image,
                runtime=self.runtime,
                env=env,
            )
        return jobs

    def find(self, job_id: str) -> SwarmerJob:
        project = self.store.project(self.project_name)
        found = (
            self.store.look(partial(table.get, project=project.id, job_id=job_id))
            if project is not None and len(job_id.encode()) <= MAX_ID
            else None
        )
        if found is None:
            raise NotFound(f"no job {job_id[:64]!r}; POST /submit makes one", field="id")
        return found

    def status(self, job_id: str) -> dict[str, Any]:
        """The job's status document: each task's status (null until it ends), args and
        output so far."""
        record = self.find(job_id)
        task = self.store.task(record.project, record.id)
        return self._document(record, task, task.current.number if task else 0, {})

    def report(self, job_id: str, body: Any, *, only: str | None = None) -> None:
        """What a task's in-container client reports (Swarmer's POST /result/{id}) while it
        runs: it stands for the task's status and output once the task has ended. `only`: the
        one job a job's own token may report for."""
        given = model.read(body, model.ResultBody)
        record = self.find(job_id)
        task = self.store.task(record.project, record.id)
        job = self.tasks.run_jobs(task.current).get(given.task_name) if task else None
        if job is None or (only is not None and job.id != only):
            raise NotFound(
                f"job {record.id} has no task {given.task_name!r} (or not one this token is for)",
                field="task_name",
            )
        if job.state is not JobState.RUNNING:
            raise Conflict(
                f"task {given.task_name!r} is {job.state}; a result is reported while it runs",
                field="task_name",
            )
        reported = Reported(
            status=given.task_status,
            stdout=given.task_result.stdout,
            stderr=given.task_result.stderr,
            at=self.now(),
        )
        self.store.change(
            partial(table.report, job_id=job.id, attempt=job.attempt, reported=reported)
        )

    def callback_document(self, task: Task, run: int, changed: Mapping[str, Job]) -> dict[str, Any]:
        """The document a completed run's callback carries (Hooks.shapes["swarmer"])."""
        record = self.store.look(partial(table.get, project=task.project, job_id=task.id))
        if record is None:  # cannot happen but by a damaged store: still say what ran
            url = task.callback.url if task.callback else ""
            record = SwarmerJob(
                id=task.id, project=task.project, image="", callback_url=url, created_at=0
            )
        return self._document(record, task, run, changed)

    def _document(
        self, record: SwarmerJob, task: Task | None, run: int, changed: Mapping[str, Job]
    ) -> dict[str, Any]:
        found = task.run_number(run) if task is not None else None
        jobs = list(self.tasks.run_jobs(found).values()) if found is not None else []
        cap = model.stream_cap(len(jobs))
        return model.document(record, [self._entry(changed.get(j.id, j), cap) for j in jobs])

    def _entry(self, job: Job, cap: int) -> dict[str, Any]:
        if job.attempt == 0 or job.state in (JobState.QUEUED, JobState.SKIPPED):
            return model.entry(job, "", "", None, cap)  # not run yet (or not this attempt)
        reported = self.store.look(partial(table.reported, job_id=job.id, attempt=job.attempt))
        out, err = (
            model.tail(self.store.output(job.id, job.attempt, stream=s).data, cap)
            for s in (STDOUT, STDERR)
        )
        return model.entry(job, out, err, reported, cap)

    def drop_project(self, project: Project) -> None:
        """The project is deleted: the jobs of it still waiting for their tasks go too."""
        self.store.change(partial(table.drop_project, project=project.id))
