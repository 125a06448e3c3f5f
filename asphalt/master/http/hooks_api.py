"""The webhooks API: a project's hooks (admin only: a hook sends the project's tasks out, and its
URL may itself be a credential), their deliveries, and sending one again."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from asphalt.master.hooks import Webhooks
from asphalt.master.http import auth
from asphalt.master.http.common import SCHEDULER, read_json, reply
from asphalt.model import bodies
from asphalt.model.bodies import HookBody
from asphalt.model.hooks import Delivery, Hook
from asphalt.model.records import Project, Scope, Task

HOOKS = web.AppKey("hooks", Webhooks)
routes = web.RouteTableDef()


def _project(request: web.Request) -> tuple[Webhooks, Project]:
    project = request.config_dict[SCHEDULER].tasks.project(request.match_info["project"])
    return request.config_dict[HOOKS], project


def _hook(request: web.Request) -> tuple[Webhooks, Hook]:
    hooks, project = _project(request)
    return hooks, hooks.hook(project, request.match_info["hook"])


@routes.post("/projects/{project}/hooks", name="create_hook")
async def create_hook(request: web.Request) -> web.Response:
    given = bodies.read(await read_json(request), HookBody)
    hooks, project = _project(request)
    hook, made = hooks.create(project, given.url, given.events, given.secret)
    body = hook.view()
    if made is not None:
        body["secret"] = made  # shown this once: keep it to check the signatures
    return reply(body, 201)


@routes.get("/projects/{project}/hooks", name="hooks")
async def list_hooks(request: web.Request) -> web.Response:
    hooks, project = _project(request)
    return reply({"hooks": [h.view() for h in hooks.hooks(project)]})


@routes.get("/projects/{project}/hooks/{hook}", name="hook")
async def show_hook(request: web.Request) -> web.Response:
    _, hook = _hook(request)
    return reply(hook.view())


@routes.delete("/projects/{project}/hooks/{hook}", name="delete_hook")
async def delete_hook(request: web.Request) -> web.Response:
    hooks, project = _project(request)
    hooks.delete(project, request.match_info["hook"])
    return reply({"deleted": request.match_info["hook"]})


@routes.get("/projects/{project}/hooks/{hook}/deliveries", name="deliveries")
async def list_deliveries(request: web.Request) -> web.Response:
    hooks, hook = _hook(request)
    return reply({"deliveries": [d.view() for d in hooks.deliveries(hook)]})


@routes.post("/projects/{project}/hooks/{hook}/deliveries/{delivery}/redeliver", name="redeliver")
async def redeliver(request: web.Request) -> web.Response:
    hooks, hook = _hook(request)
    return reply(hooks.redeliver(hook, request.match_info["delivery"]).view(), 202)


def _task(request: web.Request) -> tuple[Webhooks, Project, Task]:
    scheduler = request.config_dict[SCHEDULER]
    project = scheduler.tasks.project(request.match_info["project"])
    return (
        request.config_dict[HOOKS],
        project,
        scheduler.tasks.task(project, request.match_info["task"]),
    )


@routes.get("/projects/{project}/tasks/{task}/deliveries", name="task_deliveries")
async def task_deliveries(request: web.Request) -> web.Response:
    """The deliveries of a task's callback, newest first."""
    hooks, project, task = _task(request)
    return reply({"deliveries": callback_views(request, hooks.deliveries_of(project, task))})


def callback_views(request: web.Request, deliveries: list[Delivery]) -> list[dict[str, Any]]:
    """A callback's deliveries as a caller may see them: what its receiver answered only for an
    admin (a receiver's answer is whatever that URL gives, and a `read` token sees these)."""
    views = [d.view() for d in deliveries]
    if not auth.caller(request).may(Scope.ADMIN):
        for view in views:
            view["lastAnswer"] = None
    return views


@routes.post(
    "/projects/{project}/tasks/{task}/deliveries/{delivery}/redeliver", name="task_redeliver"
)
async def task_redeliver(request: web.Request) -> web.Response:
    hooks, project, task = _task(request)
    hook = hooks.callback(project, task)
    return reply(hooks.redeliver(hook, request.match_info["delivery"]).view(), 202)
