"""Form posts from the pages: the same endpoints as the API, answered with a redirect."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web
from multidict import MultiDictProxy

from asphalt.errors import AsphaltError, BadRequest
from asphalt.master.core.inputs import parse_project, parse_task, parse_token
from asphalt.master.http import admin, auth
from asphalt.master.http.common import SCHEDULER, read_body
from asphalt.master.http.hooks_api import HOOKS
from asphalt.web import guard, pages, template_pages

# A form's action answers with where to go next, or with a page of its own (one that shows a
# secret once cannot be a redirect).
FormHandler = Callable[[web.Request, MultiDictProxy[str]], Awaitable[str | web.StreamResponse]]


def is_form(request: web.Request) -> bool:
    return request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data")


async def handle(request: web.Request, action: FormHandler) -> web.StreamResponse | None:
    """Run a form post, or None when the body is not a form from our pages (curl's JSON)."""
    await read_body(request)  # within the size and time limits; post() parses what was read
    try:
        form = await request.post()
    except (UnicodeDecodeError, ValueError):
        return None  # not a form of ours: the JSON reader answers it
    if guard.FIELD not in form:
        return None
    back = request.headers.get("Referer") or "/"
    if not guard.valid(request, str(form[guard.FIELD])):
        raise web.HTTPSeeOther(_with_error(request, back, guard.EXPIRED))
    fields = MultiDictProxy(form) if not isinstance(form, MultiDictProxy) else form
    try:
        target = await action(request, fields)  # type: ignore[arg-type]
    except AsphaltError as e:
        typed = {k: str(v) for k, v in fields.items() if k != guard.FIELD}
        if action is create_task and "template" in fields:  # the launch form, again
            name = str(fields["template"])
            return template_pages.launch_page(
                request, name, form=typed, error=e.message, field=e.field
            )
        if action is create_task:  # show the form again with what was typed, and why not
            return await pages.project(request, form=typed, error=e.message)
        if action is create_token:
            return await pages.tokens(request, form=typed, error=e.message)
        raise web.HTTPSeeOther(_with_error(request, back, e.message)) from e
    if isinstance(target, web.StreamResponse):
        return target
    raise web.HTTPSeeOther(target)


def _with_error(request: web.Request, url: str, message: str) -> str:
    base = url.split("?", 1)[0]
    return f"{base}?error={quote(message)}&sig={guard.sign(request, message)}"


async def create_project(request: web.Request, form: MultiDictProxy[str]) -> str:
    given = parse_project({"name": form.get("name", "").strip()})
    project = request.app[SCHEDULER].tasks.create_project(given.name, None)
    return f"/projects/{project.id}"


def _job_from_form(form: MultiDictProxy[str]) -> dict[str, Any]:
    job: dict[str, Any] = {"action": form.get("action", "")}
    if container := form.get("container", "").strip():
        job["container"] = container
    if runtime := form.get("runtime", "").strip():
        job["runtime"] = runtime
    if timeout := form.get("timeout", "").strip():
        try:
            job["timeout"] = float(timeout)
        except ValueError as e:
            raise BadRequest(
                "timeout must be a number of seconds", field="jobs.main.timeout"
            ) from e
    if types := form.get("types", "").strip():
        job["types"] = [t.strip() for t in types.split(",") if t.strip()]
    env: dict[str, str] = {}
    for line in form.get("env", "").splitlines():
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise BadRequest(
                f"env lines are NAME=value; {line.strip()!r} is not", field="jobs.main.env"
            )
        env[name.strip()] = value
    if env:
        job["env"] = env
    return job


async def create_task(request: web.Request, form: MultiDictProxy[str]) -> str:
    """A task from the project page's form, or a template's launch form."""
    scheduler = request.app[SCHEDULER]
    project = scheduler.tasks.project(request.match_info["project"])
    body: dict[str, Any]
    if "template" in form:
        version = form.get("version", "")
        found = scheduler.templates.find(
            form["template"], int(version) if version.isdecimal() and len(version) < 10 else None
        )
        args = template_pages.args_from_form(found.args, form)
        body = {"template": found.name, "version": found.version, "args": args}
    else:
        body = {"jobs": {"main": _job_from_form(form)}}
    if task_id := form.get("id", "").strip():
        body["id"] = task_id
    task = scheduler.tasks.create_task(project, parse_task(body, scheduler.templates.find))
    return f"/projects/{project.id}/tasks/{task.id}"


async def rerun_task(request: web.Request, form: MultiDictProxy[str]) -> str:
    scheduler = request.app[SCHEDULER]
    project = scheduler.tasks.project(request.match_info["project"])
    task = scheduler.tasks.rerun_task(
        project, scheduler.tasks.task(project, request.match_info["task"])
    )
    return f"/projects/{project.id}/tasks/{task.id}"


async def cancel_task(request: web.Request, form: MultiDictProxy[str]) -> str:
    scheduler = request.app[SCHEDULER]
    project = scheduler.tasks.project(request.match_info["project"])
    task = scheduler.tasks.task(project, request.match_info["task"])
    scheduler.tasks.cancel_task(task)
    return f"/projects/{project.id}/tasks/{task.id}"


async def rerun_job(request: web.Request, form: MultiDictProxy[str]) -> str:
    scheduler = request.app[SCHEDULER]
    job = scheduler.tasks.rerun_job(scheduler.tasks.job(request.match_info["job"]))
    return f"/jobs/{job.id}"


async def create_token(request: web.Request, form: MultiDictProxy[str]) -> web.StreamResponse:
    projects = [p.strip() for p in form.get("projects", "").split(",") if p.strip()]
    given = parse_token(
        {
            "name": form.get("name", "").strip(),
            "scope": form.get("scope", "read"),
            "projects": projects,
        }
    )
    token, secret = request.app[auth.CREDENTIALS].create(given.name, given.scope, given.projects)
    made = {**token.view(), "token": secret, "warning": admin.token_warning(request, given.scope)}
    return await pages.tokens(request, made=made)


async def revoke_token(request: web.Request, form: MultiDictProxy[str]) -> str:
    request.app[auth.CREDENTIALS].revoke(request.match_info["token"])
    return "/tokens"


async def revoke_worker(request: web.Request, form: MultiDictProxy[str]) -> str:
    request.app[SCHEDULER].workers.revoke(request.match_info["worker"])
    return "/workers"


async def join_token(request: web.Request, form: MultiDictProxy[str]) -> web.StreamResponse:
    token = request.app[auth.CREDENTIALS].rotate_join()
    return await pages.workers(request, join={"command": admin.join_command(request, token)})


async def redeliver(request: web.Request, form: MultiDictProxy[str]) -> str:
    hooks = request.app[HOOKS]
    project = request.app[SCHEDULER].tasks.project(request.match_info["project"])
    found = hooks.hook(project, request.match_info["hook"])
    hooks.redeliver(found, request.match_info["delivery"])
    return f"/projects/{project.id}/hooks/{found.id}"


async def task_redeliver(request: web.Request, form: MultiDictProxy[str]) -> str:
    scheduler, hooks = request.app[SCHEDULER], request.app[HOOKS]
    project = scheduler.tasks.project(request.match_info["project"])
    task = scheduler.tasks.task(project, request.match_info["task"])
    hooks.redeliver(hooks.callback(project, task), request.match_info["delivery"])
    return f"/projects/{project.id}/tasks/{task.id}/deliveries"


# Route names of the API whose POST a page's form may send.
FORMS: dict[str, FormHandler] = {
    "create_project": create_project,
    "create_task": create_task,
    "rerun_task": rerun_task,
    "cancel_task": cancel_task,
    "rerun_job": rerun_job,
    "create_token": create_token,
    "revoke_token_post": revoke_token,
    "revoke_worker": revoke_worker,
    "join_token": join_token,
    "redeliver": redeliver,
    "task_redeliver": task_redeliver,
}
