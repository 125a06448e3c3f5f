"""Deleting tasks and projects, and a project's own retention (admin only, as every removal)."""

from __future__ import annotations

from aiohttp import web

from asphalt.errors import BadRequest
from asphalt.master.http.common import SCHEDULER, read_json, reply
from asphalt.master.retention import Retention
from asphalt.master.store import retention as table
from asphalt.model import bodies
from asphalt.model.bodies import ProjectSettingsBody
from asphalt.wire import UNSET, field_names, replace

RETENTION = web.AppKey("retention", Retention)
routes = web.RouteTableDef()


@routes.delete("/projects/{project}/tasks/{task}", name="delete_task")
async def delete_task(request: web.Request) -> web.Response:
    scheduler = request.config_dict[SCHEDULER]
    project = scheduler.tasks.project(request.match_info["project"])
    task = scheduler.tasks.task(project, request.match_info["task"])
    if request.config_dict[RETENTION].delete_task(project, task):
        return reply({"deleted": task.id})
    why = "it was running: cancelled now, and removed once its jobs have stopped"
    return reply({"deleting": task.id, "message": why}, 202)


@routes.delete("/projects/{project}", name="delete_project")
async def delete_project(request: web.Request) -> web.Response:
    scheduler = request.config_dict[SCHEDULER]
    project = scheduler.tasks.project(request.match_info["project"])
    waiting = request.config_dict[RETENTION].delete_project(project)
    if waiting == 0:
        return reply({"deleted": project.id})
    why = f"{waiting} of its tasks were running: cancelled now; the project goes when they stop"
    return reply({"deleting": project.id, "message": why}, 202)


@routes.patch("/projects/{project}", name="update_project")
async def update_project(request: web.Request) -> web.Response:
    given = bodies.read(await read_json(request), ProjectSettingsBody)
    changes = {k: getattr(given, k) for k in field_names(given) if getattr(given, k) is not UNSET}
    if not changes:
        raise BadRequest("give keep_days or callback_secret to change", field="keep_days")
    scheduler = request.config_dict[SCHEDULER]
    project = replace(scheduler.tasks.project(request.match_info["project"]), **changes)
    scheduler.store.change(lambda t: table.save_project(t, project))
    return reply(project.view())
