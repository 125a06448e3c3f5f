"""Cross-site request forgery guards: same-origin checks on every write, tokens on forms."""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from aiohttp import web

from asphalt.master.http import reply

COOKIE = "asphalt_csrf"
FIELD = "_csrf"


def _cross_site(request: web.Request) -> bool:
    """Whether a browser says this write comes from another site (curl and workers say nothing)."""
    if request.headers.get("Sec-Fetch-Site") in ("cross-site", "same-site"):
        return True
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    return origin == "null" or urlsplit(origin).netloc != request.host


def refusal(request: web.Request) -> web.Response | None:
    """The 403 for a write a browser sends from another site; None for every other request.

    The API reads any body as JSON, so without this a page elsewhere could post a task with a
    plain-text form and run commands on the workers.
    """
    if request.method not in ("GET", "HEAD", "OPTIONS") and _cross_site(request):
        return reply({"error": "cross-site requests may not change anything here"}, 403)
    return None


def token(request: web.Request) -> str:
    """The form token for this browser: the value of its cookie, made if it has none yet."""
    return request.cookies.get(COOKIE) or request.get(COOKIE) or _new(request)


def _new(request: web.Request) -> str:
    value = secrets.token_urlsafe(24)
    request[COOKIE] = value
    return value


def remember(request: web.Request, response: web.StreamResponse) -> None:
    """Set the cookie if this request made a new token."""
    if COOKIE in request and COOKIE not in request.cookies:
        response.set_cookie(COOKIE, request[COOKIE], httponly=True, samesite="Strict", path="/")


def valid(request: web.Request, sent: str | None) -> bool:
    cookie = request.cookies.get(COOKIE)
    return bool(cookie and sent and hmac.compare_digest(cookie, sent))
