"""Git push receivers over HTTP: a project's receivers set and shown (admin), and the
`/hooks/{project}/{kind}` sub-application the services post to, whose guard (auth.py) checks
each delivery's signature."""

from __future__ import annotations

import json

from aiohttp import web

from asphalt.errors import BadRequest
from asphalt.master.http import auth
from asphalt.master.http.common import SCHEDULER, read_json, reply
from asphalt.master.receivers import Receivers
from asphalt.model.records import Project

routes = web.RouteTableDef()
pushes = web.RouteTableDef()


def _project(request: web.Request) -> tuple[Receivers, Project]:
    project = request.config_dict[SCHEDULER].tasks.project(request.match_info["project"])
    return request.config_dict[auth.RECEIVERS], project


@routes.put("/projects/{project}/receivers/{kind}", name="put_receiver")
async def put_receiver(request: web.Request) -> web.Response:
    body = await read_json(request)
    receivers, project = _project(request)
    receiver, made = receivers.put(project, request.match_info["kind"], body)
    view = receiver.view()
    if made is not None:
        view["secret"] = made  # this once: give it to the service
    return reply(view)


@routes.get("/projects/{project}/receivers", name="receivers")
async def list_receivers(request: web.Request) -> web.Response:
    receivers, project = _project(request)
    return reply({"receivers": [r.view() for r in receivers.of(project)]})


@routes.get("/projects/{project}/receivers/{kind}", name="receiver")
async def show_receiver(request: web.Request) -> web.Response:
    receivers, project = _project(request)
    return reply(receivers.get(project, request.match_info["kind"]).view())


@routes.delete("/projects/{project}/receivers/{kind}", name="delete_receiver")
async def delete_receiver(request: web.Request) -> web.Response:
    receivers, project = _project(request)
    receivers.delete(project, request.match_info["kind"])
    return reply({"deleted": request.match_info["kind"]})


@pushes.post("/{project}/{kind}", name="push")
async def push(request: web.Request) -> web.Response:
    """A service's delivery, already verified by the guard (auth.RECEIVER)."""
    receiver = request[auth.RECEIVER]
    try:
        payload = json.loads(await request.read())
    except (ValueError, RecursionError):
        raise BadRequest(
            "the delivery is not JSON; set the service to send application/json"
        ) from None
    status, answer = request.config_dict[auth.RECEIVERS].receive(receiver, payload)
    return reply(answer, status)


def build(parent: web.Application) -> None:
    """The receivers' sub-application, mounted at /hooks, behind its own guard."""
    app = web.Application()
    app.add_routes(pushes)
    auth.protect(app, "receiver")
    parent.add_subapp("/hooks", app)
