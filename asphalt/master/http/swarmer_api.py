"""Swarmer's API over HTTP, where its clients expect it: `/submit`, `/status` and `/result` at the
master's root, each a sub-application behind the Swarmer guard (auth.py), answering errors in
the shape Swarmer's (falcon's) did: `{"title", "description"}`, with the field at fault."""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import web

from asphalt.errors import AsphaltError
from asphalt.master.http import auth
from asphalt.master.http.common import Handler, read_json, reply
from asphalt.master.swarmer import Swarmer

submit = web.RouteTableDef()
status = web.RouteTableDef()
result = web.RouteTableDef()


def _swarmer(request: web.Request) -> Swarmer:
    return request.config_dict[auth.SWARMER]


@submit.post("", name="swarmer_submit")
async def submit_job(request: web.Request) -> web.Response:
    job_id = _swarmer(request).submit(await read_json(request))
    answer = reply({"id": job_id}, 201)
    answer.headers["Location"] = f"/status/{job_id}"
    return answer


@submit.post("/{id}/tasks", name="swarmer_tasks")
async def add_tasks(request: web.Request) -> web.Response:
    job_id = request.match_info["id"]
    added = _swarmer(request).add_tasks(job_id, await read_json(request))
    answer = reply({"id": job_id, "added": added}, 201)
    answer.headers["Location"] = f"/status/{job_id}/tasks"
    return answer


@status.get("/{id}", name="swarmer_status")
async def job_status(request: web.Request) -> web.Response:
    return reply(_swarmer(request).status(request.match_info["id"]))


@status.get("/{id}/tasks", name="swarmer_status_tasks")
async def job_tasks(request: web.Request) -> web.Response:
    return reply(_swarmer(request).status(request.match_info["id"]))


@result.post("/{id}", name="swarmer_result")
async def report(request: web.Request) -> web.Response:
    """What a task's in-container client reports; with a job's own token, only its own job."""
    only = auth.caller(request).job
    _swarmer(request).report(request.match_info["id"], await read_json(request), only=only)
    return web.Response(status=204)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except AsphaltError as e:
        body = {"title": _title(e.status), "description": e.message}
        if e.field:
            body["field"] = e.field
        answer = reply(body, e.status)
        if e.status == 401:
            answer.headers["WWW-Authenticate"] = 'Bearer realm="asphalt"'
        return answer


def _title(code: int) -> str:
    return f"{code} {HTTPStatus(code).phrase}"


def build(parent: web.Application) -> None:
    """Mount the three sub-applications; the Swarmer service is at auth.SWARMER."""
    for prefix, table in (("/submit", submit), ("/status", status), ("/result", result)):
        app = web.Application(middlewares=[_errors])
        app.add_routes(table)
        auth.protect(app, "swarmer")
        parent.add_subapp(prefix, app)
