"""What every HTTP handler shares: typed app keys, JSON in and out, and the error middleware."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from asphalt import log
from asphalt.errors import AsphaltError, BadRequest, TooLarge
from asphalt.master.core.scheduler import Scheduler
from asphalt.wire import json_bytes

SCHEDULER = web.AppKey("scheduler", Scheduler)
_log = log.get("asphalt.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def wants_html(request: web.Request) -> bool:
    """Whether the client prefers a page to JSON (browsers do; curl sends */*)."""
    accept = request.headers.get("Accept", "")
    html, json = accept.find("text/html"), accept.find("application/json")
    return html >= 0 and (json < 0 or html < json)


def reply(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json_bytes(body), status=status, content_type="application/json", charset="utf-8"
    )


async def read_body(request: web.Request) -> bytes:
    """The whole body, within the size limit (413) and the time it may take to arrive (408)."""
    # aiohttp waits for a stalled body forever; a client that stops sending gets 408 instead.
    limit_s = request.config_dict.get(BODY_TIMEOUT_S, DEFAULT_BODY_TIMEOUT_S)
    try:
        if request.content.is_eof():  # all of it came with the headers: nothing to wait for
            return await request.read()
        async with asyncio.timeout(limit_s):
            return await request.read()
    except web.HTTPRequestEntityTooLarge as e:
        limit = request.config_dict[MAX_BODY]
        raise TooLarge(f"the request body is over the limit of {limit} bytes") from e
    except TimeoutError as e:
        raise web.HTTPRequestTimeout(
            text=f"the request body did not arrive within {limit_s:g} s; send it whole"
        ) from e


async def read_json(request: web.Request) -> Any:
    """The body as JSON, whatever the Content-Type says (curl --data sends a form type)."""
    raw = await read_body(request)
    if not raw.strip():
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        value = json.loads(raw)
        # JSON may escape a lone surrogate ("\ud800"), which is no text at all: refuse it here
        # rather than fail when it is stored.
        json.dumps(value, ensure_ascii=False).encode()
    except (UnicodeDecodeError, ValueError) as e:
        raise BadRequest(f"the request body is not valid JSON: {e}") from e
    except UnicodeEncodeError as e:
        raise BadRequest("the request body holds text that is not valid Unicode") from e
    except RecursionError as e:
        raise BadRequest("the request body nests too deeply") from e
    return value


MAX_BODY = web.AppKey("max_body", int)
BODY_TIMEOUT_S = web.AppKey("body_timeout_s", float)
DEFAULT_BODY_TIMEOUT_S = 30.0


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turns every error into a JSON answer, and logs one line per request."""
    started = time.monotonic()
    try:
        response = await handler(request)
    except AsphaltError as e:
        response = reply(e.to_json(), e.status)
        if e.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="asphalt"'
    except web.HTTPException as e:
        if e.status < 400:
            raise
        message = e.text if e.text and not e.text.startswith(str(e.status)) else e.reason
        if e.status == 404:
            message = f"nothing at {request.method} {request.path}"
        elif e.status == 405:
            message = f"{request.method} is not allowed on {request.path}"
        elif e.status == 413:
            message = f"the request body is over the limit of {request.config_dict[MAX_BODY]} bytes"
        response = reply({"error": message}, e.status)
        if e.status == 408:  # the rest of that body may still come; it is not a new request
            response.force_close()
    except Exception:
        _log.exception("request_failed", method=request.method, path=request.path)
        response = reply({"error": "internal error; the master logged it"}, 500)
    if not request.path.startswith("/_worker/"):
        # Every change logs its own event (task_created, job_ended, ...), so a request line is
        # news only when it was refused; the rest are for -log-level debug.
        (_log.info if response.status >= 400 else _log.debug)(
            "request",
            method=request.method,
            path=request.path,
            status=response.status,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
    return response
