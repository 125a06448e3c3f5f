"""Adds the pages to the master's application: templates, static files, content negotiation."""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from asphalt.errors import AsphaltError
from asphalt.master.http import auth
from asphalt.master.http.common import Handler, wants_html
from asphalt.web import format, forms, graphdraw, guard, login, template_pages
from asphalt.web.pages import PAGES, chrome

HERE = Path(__file__).parent
# Route names of the API whose GET a browser sees as a page, and the page it gets.
ALL_PAGES = {**PAGES, "templates": template_pages.templates, "template": template_pages.template}


@web.middleware
async def negotiate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse cross-site writes; send browsers the page for an API URL; take the pages' forms.

    One middleware rather than one for each: every request passes through all of them.
    """
    refused = guard.refusal(request)
    if refused is not None:
        return refused
    route = request.match_info.route.name
    if request.method == "GET" and route in ALL_PAGES and wants_html(request):
        try:
            return await ALL_PAGES[route](request)
        except AsphaltError as e:
            return await error_page(request, e.status, e.message)
    if request.method == "GET" and wants_html(request):
        try:
            return await handler(request)
        except web.HTTPException as e:  # no such page: tell a person in a page, not in JSON
            if e.status < 400:
                raise
            return await error_page(request, e.status, f"There is nothing at {request.path}.")
    if request.method == "POST" and route in forms.FORMS and forms.is_form(request):
        answer = await forms.handle(request, forms.FORMS[route])
        if answer is not None:
            return answer
    return await handler(request)


async def error_page(request: web.Request, status: int, message: str) -> web.StreamResponse:
    """A page that tells a person what went wrong (not found, not allowed)."""
    title = "Not allowed" if status in (401, 403) else "Not here"
    context = {"title": title, "message": message, "live": False, "error": None}
    context |= chrome(request)
    return aiohttp_jinja2.render_template("error.html", request, context, status=status)


def setup(app: web.Application) -> None:
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    env.filters["duration"] = lambda job: format.human_duration(
        format.seconds_between(job.get("startedAt"), job.get("endedAt"))
    )
    env.filters["job_order"] = graphdraw.order
    env.filters["size"] = format.human_size
    env.filters["seconds"] = format.human_duration
    env.globals["ENDED"] = format.ENDED
    app[aiohttp_jinja2.static_root_key] = "/static"
    app.router.add_static("/static/", HERE / "static", name="static", append_version=True)
    app.add_routes(login.routes)
    app[auth.LOGIN_PAGE] = login.page
    app[auth.ERROR_PAGE] = error_page
    app.middlewares.append(negotiate)
    app.on_response_prepare.append(_security_headers)


# Scripts and styles come only from this master's own files; nothing may frame a page.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every answer: nothing is sniffed into something else. On all but JSON (pages, text
    a job printed, static files): CSP, no framing, no referrer beyond this master."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if response.content_type != "application/json":
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
