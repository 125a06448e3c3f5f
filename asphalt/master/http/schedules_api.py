"""The schedules API: a project's schedules (made, paused, resumed and deleted with a `submit`
token, like the tasks they create), each with its next firing and what its last ones did."""

from __future__ import annotations

from aiohttp import web

from asphalt.master.http.common import SCHEDULER, read_json, reply
from asphalt.master.schedules import Schedules
from asphalt.model import bodies
from asphalt.model.bodies import ScheduleBody
from asphalt.model.records import Project

SCHEDULES = web.AppKey("schedules", Schedules)
routes = web.RouteTableDef()


def _project(request: web.Request) -> tuple[Schedules, Project]:
    project = request.config_dict[SCHEDULER].tasks.project(request.match_info["project"])
    return request.config_dict[SCHEDULES], project


@routes.post("/projects/{project}/schedules", name="create_schedule")
async def create_schedule(request: web.Request) -> web.Response:
    given = bodies.read(await read_json(request), ScheduleBody)
    schedules, project = _project(request)
    return reply(schedules.view(schedules.create(project, given)), 201)


@routes.get("/projects/{project}/schedules", name="schedules")
async def list_schedules(request: web.Request) -> web.Response:
    schedules, project = _project(request)
    return reply({"schedules": [schedules.view(s) for s in schedules.of(project)]})


@routes.get("/projects/{project}/schedules/{schedule}", name="schedule")
async def show_schedule(request: web.Request) -> web.Response:
    schedules, project = _project(request)
    return reply(schedules.view(schedules.get(project, request.match_info["schedule"])))


@routes.post("/projects/{project}/schedules/{schedule}/pause", name="pause_schedule")
async def pause_schedule(request: web.Request) -> web.Response:
    schedules, project = _project(request)
    return reply(schedules.view(schedules.pause(project, request.match_info["schedule"], True)))


@routes.post("/projects/{project}/schedules/{schedule}/resume", name="resume_schedule")
async def resume_schedule(request: web.Request) -> web.Response:
    schedules, project = _project(request)
    return reply(schedules.view(schedules.pause(project, request.match_info["schedule"], False)))


@routes.delete("/projects/{project}/schedules/{schedule}", name="delete_schedule")
async def delete_schedule(request: web.Request) -> web.Response:
    schedules, project = _project(request)
    schedules.delete(project, request.match_info["schedule"])
    return reply({"deleted": request.match_info["schedule"]})
