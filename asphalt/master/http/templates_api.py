"""The templates API: templates are made, changed (as a new version) and deleted by admins,
since every project's jobs may run them; anyone who may read sees them, to launch them."""

from __future__ import annotations

from aiohttp import web

from asphalt.master.core.templates import Templates
from asphalt.master.http.common import SCHEDULER, read_json, reply
from asphalt.model.bodies import TemplateQuery, read_query

routes = web.RouteTableDef()


def _templates(request: web.Request) -> Templates:
    return request.config_dict[SCHEDULER].templates


@routes.post("/templates", name="create_template")
async def create_template(request: web.Request) -> web.Response:
    body = await read_json(request)
    return reply(_templates(request).create(body).view(), 201)


@routes.get("/templates", name="templates")
async def list_templates(request: web.Request) -> web.Response:
    found = sorted(_templates(request).latest(), key=lambda t: t.name)
    return reply({"templates": [t.view() for t in found]})


@routes.get("/templates/{name}", name="template")
async def show_template(request: web.Request) -> web.Response:
    version = read_query(request.query, TemplateQuery).version
    templates = _templates(request)
    template = templates.get(request.match_info["name"], version)
    body = template.view()
    body["versions"] = [t.version for t in templates.versions(template.name)]
    return reply(body)


@routes.put("/templates/{name}", name="update_template")
async def update_template(request: web.Request) -> web.Response:
    body = await read_json(request)
    return reply(_templates(request).update(request.match_info["name"], body).view(), 201)


@routes.delete("/templates/{name}", name="delete_template")
async def delete_template(request: web.Request) -> web.Response:
    _templates(request).delete(request.match_info["name"])
    return reply({"deleted": request.match_info["name"]})
