"""The login page: a browser signs in with a token and gets a session cookie (and signs out)."""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp_jinja2
from aiohttp import web

from asphalt.master.core.credentials import SESSION_S
from asphalt.master.http import auth
from asphalt.master.http.common import read_body
from asphalt.web import guard, pages

routes = web.RouteTableDef()
BAD_TOKEN = "That token is not valid (it may have been revoked). Paste a current one."


def _safe_next(raw: str | None) -> str:
    """Where to go after signing in: a path on this master only, never another site."""
    if not raw or not raw.startswith("/") or "\\" in raw:
        return "/"
    if any(c.isspace() or not c.isprintable() for c in raw):
        return "/"  # a browser drops tabs and newlines: "/\t/evil.example" would be "//evil..."
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc or raw.startswith("//") or parts.path.startswith("/login"):
        return "/"
    return raw


async def page(
    request: web.Request, *, status: int = 401, error: str | None = None, then: str | None = None
) -> web.StreamResponse:
    """The login page, for a page request that had no valid credential."""
    context = {
        "title": "Sign in",
        "live": False,
        "error": error,
        "csrf": guard.token(request),
        "next": _safe_next(then or request.path_qs),
        **pages.chrome(request),
    }
    response = aiohttp_jinja2.render_template("login.html", request, context, status=status)
    response.headers["Cache-Control"] = "no-store"
    guard.remember(request, response)
    return response


@routes.get("/login", name="login")
async def login_form(request: web.Request) -> web.StreamResponse:
    return await page(request, status=200, then=request.query.get("next"))


@routes.post("/login", name="login_post")
async def login(request: web.Request) -> web.StreamResponse:
    await read_body(request)
    form = await request.post()
    then = _safe_next(str(form.get("next", "/")))
    if not guard.valid(request, str(form.get(guard.FIELD, ""))):
        return await page(request, status=400, error=guard.EXPIRED, then=then)
    credentials = request.config_dict[auth.CREDENTIALS]
    cookie = credentials.login(str(form.get("token", "")).strip())
    if cookie is None:
        return await page(request, status=401, error=BAD_TOKEN, then=then)
    response = web.HTTPSeeOther(then)
    response.set_cookie(
        auth.SESSION_COOKIE,
        cookie,
        max_age=SESSION_S,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.config_dict[auth.SETTINGS].tls,
    )
    return response


@routes.post("/logout", name="logout")
async def logout(request: web.Request) -> web.StreamResponse:
    cookie = request.cookies.get(auth.SESSION_COOKIE)
    if cookie:
        request.config_dict[auth.CREDENTIALS].logout(cookie)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(auth.SESSION_COOKIE, path="/")
    return response
