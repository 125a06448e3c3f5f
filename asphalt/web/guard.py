"""Cross-site request forgery guards: same-origin checks on every write, tokens on forms."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from aiohttp import web

from asphalt.master.http import auth
from asphalt.master.http.common import reply

COOKIE = "asphalt_csrf"
FIELD = "_csrf"
EXPIRED = "the form had expired; try again"  # shown without a signature: it says nothing new


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
        secure = request.config_dict[auth.SETTINGS].tls
        response.set_cookie(
            COOKIE, request[COOKIE], httponly=True, samesite="Strict", path="/", secure=secure
        )


def sign(request: web.Request, message: str) -> str:
    """A signature of a banner message for this browser (keyed by its form cookie), or ""."""
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return ""
    return hmac.new(cookie.encode(), message.encode(), hashlib.sha256).hexdigest()[:32]


def banner(request: web.Request) -> str | None:
    """The ?error= message a form redirect sent this browser; None for one a link made up.

    Without the signature anyone could send a link to a page that shows their own words in
    the page's error banner ("your session expired, sign in at ...").
    """
    message = request.query.get("error")
    if message is None or message == EXPIRED:
        return message
    expected, sent = sign(request, message), request.query.get("sig", "")
    return message if expected and hmac.compare_digest(expected, sent) else None


def valid(request: web.Request, sent: str | None) -> bool:
    cookie = request.cookies.get(COOKIE)
    return bool(cookie and sent and hmac.compare_digest(cookie, sent))
