"""Adds the pages to the master's application: templates, static files, content negotiation."""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from asphalt.errors import AsphaltError
from asphalt.master.http import Handler
from asphalt.web import format, forms, guard
from asphalt.web.pages import PAGES

HERE = Path(__file__).parent


def wants_html(request: web.Request) -> bool:
    """Whether the client prefers a page to JSON (browsers do; curl sends */*)."""
    accept = request.headers.get("Accept", "")
    html, json = accept.find("text/html"), accept.find("application/json")
    return html >= 0 and (json < 0 or html < json)


@web.middleware
async def negotiate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse cross-site writes; send browsers the page for an API URL; take the pages' forms.

    One middleware rather than one for each: every request passes through all of them.
    """
    refused = guard.refusal(request)
    if refused is not None:
        return refused
    route = request.match_info.route.name
    if request.method == "GET" and route in PAGES and wants_html(request):
        try:
            return await PAGES[route](request)
        except AsphaltError as e:
            context = {"title": "Not here", "message": e.message, "live": False, "error": None}
            return aiohttp_jinja2.render_template("error.html", request, context, status=e.status)
    if request.method == "GET" and wants_html(request):
        try:
            return await handler(request)
        except web.HTTPException as e:  # no such page: tell a person in a page, not in JSON
            if e.status < 400:
                raise
            message = f"There is nothing at {request.path}."
            context = {"title": "Not here", "message": message, "live": False, "error": None}
            return aiohttp_jinja2.render_template("error.html", request, context, status=e.status)
    if request.method == "POST" and route in forms.FORMS and forms.is_form(request):
        answer = await forms.handle(request, forms.FORMS[route])
        if answer is not None:
            return answer
    return await handler(request)


def setup(app: web.Application) -> None:
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    env.filters["duration"] = lambda job: format.human_duration(
        format.seconds_between(job.get("startedAt"), job.get("endedAt"))
    )
    env.globals["ENDED"] = format.ENDED
    app[aiohttp_jinja2.static_root_key] = "/static"
    app.router.add_static("/static/", HERE / "static", name="static", append_version=True)
    app.middlewares.append(negotiate)
