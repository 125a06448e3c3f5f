"""The pages: dashboard, project, task, job, workers, tokens and a hook's deliveries, built from
the API's own views."""

from __future__ import annotations

import time
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from asphalt.master.core.inputs import parse_limit, whole
from asphalt.master.core.scheduler import Scheduler
from asphalt.master.http import admin as admin_api
from asphalt.master.http import auth
from asphalt.master.http.artifacts_api import ARTIFACTS
from asphalt.master.http.common import SCHEDULER
from asphalt.master.http.hooks_api import HOOKS, callback_views
from asphalt.master.http.retention_api import RETENTION
from asphalt.master.http.schedules_api import SCHEDULES
from asphalt.model.hooks import Delivery
from asphalt.model.records import JobState, Project, Scope
from asphalt.web import graphdraw, guard
from asphalt.web.format import strip_ansi

PAGE_TAIL = 64 << 10  # the output a page shows; the whole of it is one link away
TASK_PAGE_OUTPUT = 256 << 10  # all the jobs' output a task page shows, shared among them
TASK_PAGE_MIN_TAIL = 256
RECENT_S = 24 * 3600


def chrome(request: web.Request) -> dict[str, Any]:
    """What every page's frame shows: the caller's links and buttons, the -auth off warning."""
    who = auth.known_caller(request)
    return {
        "admin": _may(request, Scope.ADMIN),
        "submit": _may(request, Scope.SUBMIT),
        "signed_in": who is not None and who.via == "session",
        "auth_off": request.config_dict[auth.SETTINGS].mode is auth.Mode.OFF,
        "command": request.config_dict[admin_api.WORKER_COMMAND],
    }


def render(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    """A page: the template with the frame's context (links, counts, the form token)."""
    scheduler = request.app[SCHEDULER]
    context.setdefault("live", False)
    context["csrf"] = guard.token(request)
    context.setdefault("error", guard.banner(request))
    context.setdefault("form", {})
    context["counts"] = {
        "queued": len(scheduler.dispatch.queues),
        "running": scheduler.dispatch.running_count(),
    }
    context |= chrome(request)
    response = aiohttp_jinja2.render_template(template, request, context, status=status)
    response.headers["Cache-Control"] = "no-store"
    guard.remember(request, response)
    return response


def _in_flight(task: dict[str, Any]) -> bool:
    return bool(task["status"] != "complete")


async def dashboard(request: web.Request) -> web.Response:
    scheduler = request.app[SCHEDULER]
    projects: list[dict[str, Any]] = []
    failed = 0
    since = time.time() - RECENT_S
    who = auth.caller(request)
    for project in sorted(scheduler.store.projects(), key=lambda p: p.name):
        if not who.sees(project):
            continue
        tasks = scheduler.store.tasks(project.id, limit=5)
        views = [scheduler.views.task(project, t, t.current, output=False) for t in tasks]
        failed += sum(
            1
            for t in scheduler.store.tasks(project.id, limit=50)
            if t.created_at >= since and _outcome(scheduler, t) == "failed"
        )
        projects.append({"project": project.view(), "tasks": views})
    workers = scheduler.views.workers(who.sees if who.projects else None)
    live = any(_in_flight(t) for p in projects for t in p["tasks"])
    return render(
        request,
        "dashboard.html",
        {
            "projects": projects,
            "workers": workers,
            "failed": failed,
            "live": live,
            "title": "Asphalt",
        },
    )


def _outcome(scheduler: Scheduler, task: Any) -> str | None:
    outcome: str | None = scheduler.views.run_summary(task.current)["outcome"]
    return outcome


async def project(
    request: web.Request, *, form: dict[str, str] | None = None, error: str | None = None
) -> web.Response:
    """The project page; after a bad form, again with what was typed and what was wrong."""
    scheduler = request.app[SCHEDULER]
    project = scheduler.tasks.project(request.match_info["project"])
    limit = parse_limit(request.query.get("limit"), default=25)
    before = (
        scheduler.tasks.task(project, request.query["before"])
        if "before" in request.query
        else None
    )
    tasks = scheduler.store.tasks(project.id, limit=limit + 1, before=before)
    views = [scheduler.views.task(project, t, t.current, output=False) for t in tasks[:limit]]
    older = f"?limit={limit}&before={tasks[limit - 1].id}" if len(tasks) > limit else None
    schedules = request.app[SCHEDULES]
    context = {
        "project": project.view(),
        "tasks": views,
        "older": older,
        "paged": before is not None,
        "live": any(_in_flight(t) for t in views),
        "title": project.name,
        "schedules": [schedules.view(s) for s in schedules.of(project)],
        "hooks": [h.view() for h in request.app[HOOKS].hooks(project)]
        if _may(request, Scope.ADMIN)
        else [],
    }
    if error is not None:
        context |= {"error": error, "form": form or {}}
    return render(request, "project.html", context, status=400 if error else 200)


async def task(request: web.Request) -> web.Response:
    scheduler = request.app[SCHEDULER]
    project = scheduler.tasks.project(request.match_info["project"])
    task = scheduler.tasks.task(project, request.match_info["task"])
    raw = request.query.get("run", "")
    run = task.run_number(int(raw)) if whole(raw) else task.current
    if run is None:
        raise web.HTTPFound(request.path)
    view = scheduler.views.task(project, task, run, output=False)
    tail = _output_tail(len(view["jobs"]))
    for job in view["jobs"].values():
        job_record = scheduler.tasks.job(job["id"])
        job["output"] = strip_ansi(_whole_lines(scheduler.views.output_text(job_record, tail=tail)))
    drawn = graphdraw.layout(view["jobs"])
    graph = None
    if graphdraw.is_graph(view["jobs"]):
        graph = {"svg": graphdraw.svg(drawn), "omitted": drawn.omitted}
    runs = [scheduler.views.run_summary(r) for r in reversed(task.runs)]
    ended = [j.ended_at for j in scheduler.tasks.run_jobs(run).values() if j.ended_at]
    complete = view["status"] == "complete" or run.number != task.current.number
    retention = request.app[RETENTION]
    kept = retention.keep_until(project, max(ended, default=None)) if complete else None
    context = {
        "project": project.view(),
        "task": view,
        "kept_until": kept,
        "keep_days": retention.days_for(project),
        "order": list(drawn.boxes),
        "graph": graph,
        "runs": runs,
        "current": run.number == task.current.number,
        "live": _in_flight(view),
        "title": f"{task.id} · {project.name}",
    }
    return render(request, "task.html", context)


def _output_tail(jobs: int) -> int:
    """How much of each job's output the task page shows: 8 KiB each for up to 32 jobs, then
    less, so a task of 1,000 jobs still makes a page of a few hundred KiB."""
    return max(TASK_PAGE_MIN_TAIL, min(8 << 10, TASK_PAGE_OUTPUT // max(jobs, 1)))


def _whole_lines(text: str) -> str:
    """A tail that starts at a line, not in the middle of one (after the "earlier bytes" note)."""
    if not text.startswith("[asphalt: "):
        return text
    note, _, rest = text.partition("\n")
    _, newline, lines = rest.partition("\n")
    return f"{note}\n{lines}" if newline else text


async def job(request: web.Request) -> web.Response:
    scheduler = request.app[SCHEDULER]
    record = scheduler.tasks.job(request.match_info["job"])
    project = scheduler.tasks.project(record.project)
    view = scheduler.views.job(record, output=False)
    size = scheduler.store.output_received(record.id, record.attempt) if record.attempt else 0
    start = max(0, size - PAGE_TAIL)
    read = scheduler.store.output(record.id, record.attempt, start) if record.attempt else None
    data = read.data if read else b""
    if start:
        newline = data.find(b"\n")
        if 0 <= newline < len(data) - 1:
            start, data = start + newline + 1, data[newline + 1 :]
    task_record = scheduler.tasks.task(project, record.task)
    artifacts = request.app[ARTIFACTS].listed(record, record.attempt) if record.attempt else []
    context = {
        "project": project.view(),
        "current": task_record.current.number == record.run,
        "task_status": scheduler.views.run_summary(task_record.current)["status"],
        "job": view,
        "output": strip_ansi(data.decode("utf-8", "replace")),
        "offset": read.end if read else 0,
        "hidden": start,
        "artifacts": [a.view(record.id, record.attempt) for a in artifacts],
        "artifacts_archive": f"/jobs/{record.id}/artifacts?attempt={record.attempt}&archive=tar.gz"
        if any(a.sha256 for a in artifacts)
        else None,
        "live": record.state in (JobState.QUEUED, JobState.RUNNING),
        "title": f"{record.name} of {record.task} · {project.name}",
    }
    return render(request, "job.html", context)


async def workers(request: web.Request, *, join: dict[str, str] | None = None) -> web.Response:
    """The workers; after a new join token was made, with the command that uses it (once)."""
    scheduler = request.app[SCHEDULER]
    who = auth.caller(request)
    views = scheduler.views.workers(who.sees if who.projects else None)
    context = {
        "workers": views,
        "live": join is None,  # a page that shows a secret once does not reload itself
        "title": "Workers",
        "join": join,
    }
    return render(request, "workers.html", context)


async def tokens(
    request: web.Request,
    *,
    made: dict[str, Any] | None = None,
    form: dict[str, str] | None = None,
    error: str | None = None,
) -> web.Response:
    """The tokens; after one was made, with its secret (shown this once)."""
    listed = [t.view() for t in request.config_dict[auth.CREDENTIALS].listed()]
    context: dict[str, Any] = {"tokens": listed, "made": made, "title": "Tokens"}
    if error is not None:
        context |= {"error": error, "form": form or {}}
    return render(request, "tokens.html", context, status=400 if error else 200)


def _may(request: web.Request, scope: Scope) -> bool:
    who = auth.known_caller(request)
    return who is not None and who.may(scope)


async def hook(request: web.Request) -> web.Response:
    """A hook's deliveries, newest first, each with a redeliver button."""
    hooks = request.app[HOOKS]
    project = request.app[SCHEDULER].tasks.project(request.match_info["project"])
    found = hooks.hook(project, request.match_info["hook"])
    base = f"/projects/{project.id}/hooks/{found.id}/deliveries"
    return _deliveries(request, project, found.view(), hooks.deliveries(found), base, None)


async def task_deliveries(request: web.Request) -> web.Response:
    """A task callback's deliveries, as a hook's page shows them."""
    scheduler, hooks = request.app[SCHEDULER], request.app[HOOKS]
    project = scheduler.tasks.project(request.match_info["project"])
    record = scheduler.tasks.task(project, request.match_info["task"])
    callback = {"url": record.callback.url if record.callback else "", "events": []}
    base = f"/projects/{project.id}/tasks/{record.id}/deliveries"
    return _deliveries(
        request, project, callback, hooks.deliveries_of(project, record), base, record.id
    )


def _deliveries(
    request: web.Request,
    project: Project,
    shown: dict[str, Any],
    deliveries: list[Delivery],
    base: str,
    task_id: str | None,
) -> web.Response:
    context = {
        "project": project.view(),
        "hook": shown,
        "deliveries": callback_views(request, deliveries)
        if task_id
        else [d.view() for d in deliveries],
        "redeliver_base": base,
        "can_redeliver": _may(request, Scope.SUBMIT if task_id else Scope.ADMIN),
        "task_id": task_id,
        "title_kind": "Callback" if task_id else "Hook",
        "title": f"{'callback of ' + task_id if task_id else 'hook'} · {project.name}",
        "live": any(d.state == "pending" for d in deliveries),
    }
    return render(request, "hook.html", context)


# Route names of the API (asphalt/master/http/api.py) whose GET a browser sees as a page.
PAGES = {
    "projects": dashboard,
    "project": project,
    "task": task,
    "job": job,
    "workers": workers,
    "tokens": tokens,
    "hook": hook,
    "task_deliveries": task_deliveries,
}
