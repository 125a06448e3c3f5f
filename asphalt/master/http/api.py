"""The user-facing JSON API (DESIGN.md §2): projects, tasks, jobs, output, workers."""

from __future__ import annotations

import re

from aiohttp import web

from asphalt.errors import BadRequest, Conflict, NotFound
from asphalt.master.core.inputs import parse_jobs, parse_project, parse_task, whole
from asphalt.master.core.scheduler import Scheduler
from asphalt.master.http import auth
from asphalt.master.http.common import SCHEDULER, read_json, reply
from asphalt.model.bodies import (
    MAX_OFFSET,
    OutputQuery,
    RunQuery,
    TasksQuery,
    WorkersQuery,
    read_query,
)
from asphalt.model.records import Job, Project, Run, Task
from asphalt.protocol import STREAMS

routes = web.RouteTableDef()
FOLLOW_WAIT_S = 15.0


def _project(request: web.Request) -> tuple[Scheduler, Project]:
    scheduler = request.app[SCHEDULER]
    return scheduler, scheduler.tasks.project(request.match_info["project"])


def _task(request: web.Request) -> tuple[Scheduler, Project, Task]:
    scheduler, project = _project(request)
    return scheduler, project, scheduler.tasks.task(project, request.match_info["task"])


def _run(request: web.Request, task: Task) -> Run:
    number = read_query(request.query, RunQuery).run
    run = task.run_number(number)
    if run is None:
        raise NotFound(
            f"task {task.id} has no run {number}; it has runs 1 to {len(task.runs)}", field="run"
        )
    return run


@routes.get("/", name="projects")
async def list_projects(request: web.Request) -> web.Response:
    who = auth.caller(request)
    projects = [p for p in request.app[SCHEDULER].store.projects() if who.sees(p)]
    return reply({"projects": [p.view() for p in sorted(projects, key=lambda p: p.name)]})


def _idempotency(request: web.Request) -> str | None:
    """The key under which a create is remembered: the same key again returns the first result."""
    raw = request.headers.get("Idempotency-Key")
    if raw is None:
        return None
    if not 1 <= len(raw) <= 200 or not raw.isprintable():
        raise BadRequest(
            "Idempotency-Key must be 1 to 200 printable characters", field="Idempotency-Key"
        )
    return f"{request.path}\n{raw}"


@routes.post("/", name="create_project")
async def create_project(request: web.Request) -> web.Response:
    body = await read_json(request)  # first: no await between the key's check and its use
    scheduler = request.app[SCHEDULER]
    key = _idempotency(request)
    made = scheduler.store.made_by(key) if key else None
    if made is not None:
        return reply(scheduler.tasks.project(made[0]).view(), 201)
    given = parse_project(body)
    project = scheduler.tasks.create_project(given.name, given.id, key=key)
    return reply(project.view(), 201)


@routes.get("/projects/{project}", name="project")
async def show_project(request: web.Request) -> web.Response:
    scheduler, project = _project(request)
    query = read_query(request.query, TasksQuery)
    limit = query.limit
    before = None
    if query.before is not None:
        before = scheduler.store.task(project.id, query.before)
        if before is None:
            raise NotFound("before names no task of this project", field="before")
    tasks = scheduler.store.tasks(project.id, limit=limit + 1, before=before)
    page = tasks[:limit]
    more = len(tasks) > limit
    body = project.view()
    body["tasks"] = [scheduler.views.task(project, t, t.current, output=False) for t in page]
    body["next"] = f"/projects/{project.id}?limit={limit}&before={page[-1].id}" if more else None
    return reply(body)


@routes.post("/projects/{project}", name="create_task")
async def create_task(request: web.Request) -> web.Response:
    body = await read_json(request)  # first: no await between the key's check and its use
    scheduler, project = _project(request)
    key = _idempotency(request)
    made = scheduler.store.made_by(key) if key else None
    if made is not None:
        found = scheduler.store.task(project.id, made[1])
        if found is None:
            raise Conflict(
                f"the task this Idempotency-Key made, {made[1]!r}, was deleted since; send the "
                "task again with a new key to make it again",
                field="Idempotency-Key",
            )
        task = found
    else:
        task = scheduler.tasks.create_task(
            project, parse_task(body, scheduler.templates.find), key=key
        )
    return reply(scheduler.views.task(project, task, task.current), 201)


@routes.get("/projects/{project}/tasks/{task}", name="task")
async def show_task(request: web.Request) -> web.Response:
    scheduler, project, task = _task(request)
    return reply(scheduler.views.task(project, task, _run(request, task)))


@routes.post("/projects/{project}/tasks/{task}/rerun", name="rerun_task")
async def rerun_task(request: web.Request) -> web.Response:
    scheduler, project, task = _task(request)
    task = scheduler.tasks.rerun_task(project, task)
    return reply(scheduler.views.task(project, task, task.current), 201)


@routes.post("/projects/{project}/tasks/{task}/jobs", name="add_jobs")
async def add_jobs(request: web.Request) -> web.Response:
    """Add jobs to the task's current run while it goes on (a job may, with its own token)."""
    body = await read_json(request)
    scheduler, project, task = _task(request)  # after the await: the task as it is now
    existing = {name: j.spec.node for name, j in scheduler.tasks.run_jobs(task.current).items()}
    added = scheduler.tasks.add_jobs(
        project, task, parse_jobs(body, existing, scheduler.templates.find)
    )
    task = scheduler.tasks.task(project, task.id)
    # 200: every job was there already, as described (a rerun job adding its jobs again).
    return reply(scheduler.views.task(project, task, task.current), 201 if added else 200)


@routes.post("/projects/{project}/tasks/{task}/cancel", name="cancel_task")
async def cancel_task(request: web.Request) -> web.Response:
    scheduler, project, task = _task(request)
    scheduler.tasks.cancel_task(task)
    return reply(scheduler.views.task(project, task, task.current))


def _job(request: web.Request) -> tuple[Scheduler, Job]:
    scheduler = request.app[SCHEDULER]
    return scheduler, scheduler.tasks.job(request.match_info["job"])


@routes.get("/jobs/{job}", name="job")
async def show_job(request: web.Request) -> web.Response:
    scheduler, job = _job(request)
    return reply(scheduler.views.job(job))


@routes.post("/jobs/{job}/rerun", name="rerun_job")
async def rerun_job(request: web.Request) -> web.Response:
    scheduler, job = _job(request)
    return reply(scheduler.views.job(scheduler.tasks.rerun_job(job)), 201)


@routes.get("/jobs/{job}/output", name="job_output")
async def job_output(request: web.Request) -> web.StreamResponse:
    """What is kept of a job's output: both streams as they interleaved, or ?stream= one."""
    scheduler, job = _job(request)
    query = read_query(request.query, OutputQuery)
    attempt = _attempt(query.attempt, job)
    stream = STREAMS.get(query.stream)
    if query.follow or "text/event-stream" in request.headers.get("Accept", ""):
        return await _follow(request, scheduler, job, attempt, stream, query.from_)
    data = scheduler.store.output(job.id, attempt, stream=stream).data if attempt else b""
    return web.Response(body=data, content_type="text/plain", charset="utf-8")


def _attempt(given: int | None, job: Job) -> int:
    if given is None:
        return job.attempt
    if job.attempt == 0:
        raise BadRequest("this job has not run yet, so it has no attempts", field="attempt")
    if given > job.attempt:
        raise BadRequest(f"attempt must be a number from 1 to {job.attempt}", field="attempt")
    return given


async def _follow(
    request: web.Request,
    scheduler: Scheduler,
    job: Job,
    attempt: int,
    stream: int | None,
    start: int,
) -> web.StreamResponse:
    """Stream output until the attempt ends: plain text, or SSE whose ids are byte offsets."""
    sse = "text/event-stream" in request.headers.get("Accept", "")
    response = web.StreamResponse(headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    response.content_type = "text/event-stream" if sse else "text/plain"
    response.charset = "utf-8"
    await response.prepare(request)
    # EventSource resends the last id it saw when it reconnects; a page starts it at ?from=.
    resume = request.headers.get("Last-Event-ID", "")
    offset = int(resume) if whole(resume) and int(resume) <= MAX_OFFSET else start
    held = b""  # the start of a character cut in two: it waits for its rest
    while True:
        current = scheduler.store.job(job.id) or job
        if attempt == 0:
            attempt = current.attempt
        read = scheduler.store.output(job.id, attempt, offset, stream=stream) if attempt else None
        data = held + (read.data if read else b"")
        offset = read.end if read else offset
        cut = _complete_utf8(data)
        data, held = data[:cut], data[cut:]
        ended = current.attempt != attempt or current.state.terminal
        if ended and not data:
            data, held = held, b""  # it has no rest coming: shown as it is
        if data:
            await scheduler.store.flushed()  # never show bytes before they are on disk
            await response.write(
                _sse("output", data.decode("utf-8", "replace"), offset) if sse else data
            )
        if scheduler.closing and not ended:
            break  # no "end": a browser reconnects (from its last id) once the master is back
        if ended and not data:
            await scheduler.store.flushed()  # the end is told only once it is stored
            if sse:
                await response.write(_sse("end", current.state, offset))
            break
        if not data:
            await scheduler.signals.wait(f"job:{job.id}", FOLLOW_WAIT_S)
            if sse:
                await response.write(b": keepalive\n\n")
    await response.write_eof()
    return response


def _complete_utf8(data: bytes) -> int:
    """How much of `data` ends on a whole UTF-8 character (so a split one waits for its rest)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:
            continue
        if byte & 0x80 == 0:
            return len(data)
        need = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4
        return len(data) if back >= need else len(data) - back
    return len(data)


def _sse(event: str, text: str, offset: int) -> bytes:
    # SSE ends a line at \r too, so a progress bar's \r starts a new line rather than being lost.
    lines = "".join(f"data: {line}\n" for line in re.split(r"\r\n|\r|\n", text))
    return f"event: {event}\nid: {offset}\n{lines}\n".encode()


@routes.get("/workers", name="workers")
async def list_workers(request: web.Request) -> web.Response:
    scheduler = request.app[SCHEDULER]
    every = read_query(request.query, WorkersQuery).all
    who = auth.caller(request)
    sees = who.sees if who.projects else None
    views = scheduler.views.workers(sees, every=every)
    return reply({"workers": views})
