"""Who may call the master: the one place that decides, for each of its surfaces.

The user surface (API and pages) takes a bearer token, a browser session, or trust in a request
made on the master's own box; the worker surface (`/_worker`) takes the join token to register
and then only the worker's own credential; git push receivers (`/hooks`) take a delivery signed
with the receiver's secret; the Swarmer API (`/submit`, `/status`, `/result`) takes what the
user surface does but sessions, for its one project, and a Swarmer task's own job token to
report its result. Each app gets its guard from `protect`, and a guard
decides for the routes of its own app only, so no route can opt out by itself.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from aiohttp import web

from asphalt.errors import Forbidden, NotFound, Unauthorized
from asphalt.master.core.credentials import JOB_PREFIX, Credentials
from asphalt.master.http.common import SCHEDULER, Handler, read_body, wants_html
from asphalt.master.receivers import Receivers
from asphalt.master.swarmer import Swarmer
from asphalt.model.members import Token
from asphalt.model.receivers import Receiver
from asphalt.model.records import JobState, Project, Scope

SESSION_COOKIE = "asphalt_session"
# Headers a proxy adds: a request carrying any came through one, so it is not "from this box".
# (A proxy that adds none, such as a TCP forwarder or nginx's default proxy_pass, cannot be
# told apart: a box with one needs -auth always; docs/security.md.)
FORWARDING = (
    "Forwarded",
    "X-Forwarded-For",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
    "X-Real-IP",
    "X-Client-IP",
    "True-Client-IP",
    "CF-Connecting-IP",
    "X-Original-Forwarded-For",
    "Via",
)
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
DELIVERY = "Asphalt-Delivery"  # the header on every delivery the hook sender makes
# Routes anyone may reach: the login page needs them (the rest of the page is static files), and
# the health checks a load balancer makes, which say nothing but "ok" or "ready".
OPEN_ROUTES = frozenset({"login", "login_post", "logout", "static", "healthz", "readyz"})
# Reads about every project at once: a token limited to some projects may not make them.
ALL_PROJECTS = frozenset({"metrics"})
# Writes a `submit` token may make in its projects; every other write needs `admin`.
SUBMIT_ROUTES = frozenset(
    {
        *("create_task", "rerun_task", "cancel_task", "rerun_job", "add_jobs"),
        *("create_schedule", "pause_schedule", "resume_schedule", "delete_schedule"),
        "task_redeliver",
    }
)
JOB_ROUTES = frozenset({"task", "add_jobs"})  # what a job's own token may do, for its task only
# Reads that need `admin`: the tokens themselves.
ADMIN_READS = frozenset({"tokens", "hooks", "hook", "deliveries", "receivers", "receiver"})
_RANK = {Scope.READ: 0, Scope.SUBMIT: 1, Scope.ADMIN: 2}

NO_TOKEN = (
    "this needs a token: send Authorization: Bearer TOKEN (the master keeps an admin token in "
    "admin.token in its data directory; make scoped ones with POST /tokens)"
)
BAD_TOKEN = "the token sent is not valid (it may have been revoked); send a current one"
NO_JOIN = (
    "registering a worker needs the join token: start the worker with -join TOKEN "
    "(or ASPHALT_JOIN); the master printed it at start and keeps it in join.token"
)
BAD_JOIN = (
    "the join token is not valid (a new one may have been made with POST /workers/join-token); "
    "start the worker with the master's current join token"
)
BAD_WORKER = "this worker's credential is not valid; start the worker again with -join TOKEN"
REVOKED = (
    "an admin revoked this worker's credential; to bring it back, start it again with "
    "-join and the master's join token"
)


class Mode(StrEnum):
    LOCAL = "local"  # requests made on the master's own box need no token
    ALWAYS = "always"  # every request needs one
    OFF = "off"  # nobody needs one: trusted labs only


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    mode: Mode = Mode.LOCAL
    hosts: frozenset[str] = frozenset()  # names a Host may give beside loopback (rebinding)
    tls: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Caller:
    """Who made a request, as the guard found: by what means, and what they may do."""

    via: str  # "token", "session", "loopback" or "off"
    scope: Scope
    projects: tuple[str, ...] = ()
    token: str | None = None  # the token's id
    task: str | None = None  # for a job's token: the task it may read and add jobs to
    job: str | None = None  # and the job it is

    def may(self, need: Scope) -> bool:
        return self.scope in _RANK and _RANK[self.scope] >= _RANK[need]

    def sees(self, project: Project) -> bool:
        return not self.projects or bool({project.id, project.name} & set(self.projects))


CREDENTIALS = web.AppKey("credentials", Credentials)
SETTINGS = web.AppKey("auth_settings", Settings)
LoginPage = Callable[[web.Request], Awaitable[web.StreamResponse]]
LOGIN_PAGE: web.AppKey[LoginPage] = web.AppKey("login_page")
# A person's browser is told "not allowed" in a page, not in JSON: (request, status, message).
ErrorPage = Callable[[web.Request, int, str], Awaitable[web.StreamResponse]]
ERROR_PAGE: web.AppKey[ErrorPage] = web.AppKey("error_page")
_CALLER = web.RequestKey("caller", Caller)
RECEIVERS = web.AppKey("receivers", Receivers)
RECEIVER = web.RequestKey("receiver", Receiver)  # the receiver a verified push is for
SWARMER = web.AppKey("swarmer", Swarmer)
_CONNECTIONS: weakref.WeakKeyDictionary[asyncio.BaseTransport, bool] = weakref.WeakKeyDictionary()
_ADMIN = Caller(via="off", scope=Scope.ADMIN)
_LOCAL = Caller(via="loopback", scope=Scope.ADMIN)


def caller(request: web.Request) -> Caller:
    """Who made this request (set by the guard before any handler runs)."""
    found: Caller | None = request.get(_CALLER)
    if found is None:
        raise Unauthorized()  # never reached through a guarded app; refuse if it is
    return found


def known_caller(request: web.Request) -> Caller | None:
    """Who made this request, if the guard found out (not on the open routes)."""
    found: Caller | None = request.get(_CALLER)
    return found


def protect(app: web.Application, surface: str) -> None:
    """Give `app` the guard of its surface ("user", "worker", "receiver" or "swarmer")."""
    guards = {"user": _user_guard, "worker": _worker_guard, "receiver": _receiver_guard}
    guard = {**guards, "swarmer": _swarmer_guard}[surface]

    @web.middleware
    async def guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.apps and request.match_info.apps[-1] is not app:
            return await handler(request)  # a route of a sub-application: its own guard decides
        return await guard(request, handler)

    app.middlewares.append(guarded)


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def host_name(request: web.Request) -> str:
    """The name in the request's Host, without port or brackets, in lower case."""
    host = (request.headers.get("Host") or "").strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        return host.partition(":")[0]
    return host


def _is_loopback(address: object) -> bool:
    """Whether a socket address is on loopback (127.0.0.0/8, ::1, or 127.x mapped to IPv6).

    Plain string tests rather than the ipaddress module: this runs on every request."""
    if not isinstance(address, tuple) or not address or not isinstance(address[0], str):
        return False
    host = address[0]
    return host.startswith(("127.", "::ffff:127.")) or host == "::1"


def from_this_box(request: web.Request) -> bool:
    """Made on the loopback interface, naming loopback, with nothing forwarded through a proxy."""
    transport = request.transport
    if transport is None or any(h in request.headers for h in FORWARDING):
        return False
    if DELIVERY in request.headers:
        # A webhook or task callback the master sends itself (a URL pointed at it): the one
        # who chose the URL is not on this box, so the request is not trusted as local.
        return False
    on_loopback = _CONNECTIONS.get(transport)
    if on_loopback is None:  # once per connection, not per request of a kept-alive one
        peer, local = transport.get_extra_info("peername"), transport.get_extra_info("sockname")
        on_loopback = _CONNECTIONS[transport] = _is_loopback(peer) and _is_loopback(local)
    return on_loopback and host_name(request) in LOOPBACK_NAMES


def _host_allowed(request: web.Request, settings: Settings) -> bool:
    """Whether the Host names this master (not a name an attacker pointed at it: rebinding)."""
    name = host_name(request)
    if name in LOOPBACK_NAMES or name in settings.hosts:
        return True
    transport = request.transport
    local = transport.get_extra_info("sockname") if transport is not None else None
    # The address the request reached is one of this master's own interface addresses.
    return isinstance(local, tuple) and bool(local) and name == str(local[0]).lower()


def _identify(request: web.Request, *, sessions: bool = True) -> Caller:
    credentials, settings = request.config_dict[CREDENTIALS], request.config_dict[SETTINGS]
    presented = bearer(request)
    if presented is not None and presented.startswith(JOB_PREFIX):
        return _job_caller(request, credentials.job_of(presented))
    if presented is not None:
        token = credentials.api(presented)
        if token is None:
            raise Unauthorized(BAD_TOKEN)
        return _from_token(token, "token")
    cookie = request.cookies.get(SESSION_COOKIE) if sessions else None
    if cookie:
        token = credentials.session(cookie)
        if token is not None:
            if not _host_allowed(request, settings):
                raise Forbidden(_foreign_host(request))
            return _from_token(token, "session")
    if settings.mode is Mode.OFF:
        return _ADMIN
    if settings.mode is Mode.LOCAL and from_this_box(request):
        return _LOCAL
    raise Unauthorized(NO_TOKEN)


def _job_caller(request: web.Request, held: tuple[str, int] | None) -> Caller:
    """A running job calling with its own token: good only while that attempt runs."""
    job = request.config_dict[SCHEDULER].store.job(held[0]) if held else None
    if held is None or job is None or job.state is not JobState.RUNNING or job.attempt != held[1]:
        raise Unauthorized(
            "this job token is not valid: it is good only while its job runs (ASPHALT_JOB_TOKEN)"
        )
    return Caller(via="job", scope=Scope.JOB, projects=(job.project,), task=job.task, job=job.id)


def _foreign_host(request: web.Request) -> str:
    return (
        f"Host {host_name(request)!r} does not name this master; open it by its own name, or "
        "start the master with -allow-host NAME (or -public-url URL)"
    )


def _from_token(token: Token, via: str) -> Caller:
    return Caller(via=via, scope=token.scope, projects=token.projects, token=token.id)


def required(request: web.Request) -> Scope:
    """The scope a request needs, by its route: unknown routes need the most."""
    route = request.match_info.route.name or ""
    if request.method in ("GET", "HEAD"):
        return Scope.ADMIN if route in ADMIN_READS else Scope.READ
    return Scope.SUBMIT if route in SUBMIT_ROUTES else Scope.ADMIN


def _project_of(request: web.Request) -> Project | None:
    """The project a request is about, if its route names one (or a job of one)."""
    scheduler = request.config_dict[SCHEDULER]
    info = request.match_info
    if "project" in info:
        return scheduler.store.project(info["project"])
    if "job" in info:
        job = scheduler.store.job(info["job"])
        return scheduler.store.project(job.project) if job is not None else None
    return None


async def _user_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.route.name in OPEN_ROUTES:
        return await handler(request)
    try:
        request[_CALLER] = _allowed(request)
    except Unauthorized:
        if wants_html(request):  # a person: the login page, which comes back here after
            page: web.StreamResponse = await request.config_dict[LOGIN_PAGE](request)
            return page
        raise
    except Forbidden as e:
        if wants_html(request):
            shown: web.StreamResponse = await request.config_dict[ERROR_PAGE](
                request, e.status, e.message
            )
            return shown
        raise
    return await handler(request)


def _allowed(request: web.Request) -> Caller:
    """Who made the request, if they may make it; else Unauthorized or Forbidden."""
    who = _identify(request)
    if who.scope is Scope.JOB:
        project = _project_of(request)
        own = project is not None and project.id in who.projects
        if (
            request.match_info.route.name not in JOB_ROUTES
            or not own
            or (request.match_info.get("task") != who.task)
        ):
            raise Forbidden("a job's token may only read its own task and add jobs to it")
        return who
    need = required(request)
    if not who.may(need):
        raise Forbidden(f"this needs a token of scope {need}; the one sent is {who.scope}")
    if who.projects and request.match_info.route.name in ALL_PROJECTS:
        raise Forbidden("this counts across every project; use a token not limited to projects")
    if who.projects:
        project = _project_of(request)
        named = request.match_info.get("project")
        if (project is not None and not who.sees(project)) or (project is None and named):
            raise Forbidden("the token sent may not use this project")
    return who


async def _worker_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    credentials = request.config_dict[CREDENTIALS]
    presented = bearer(request)
    if request.match_info.route.name == "register":
        if presented is None:
            raise Unauthorized(NO_JOIN)
        if not credentials.join_ok(presented):
            raise Unauthorized(BAD_JOIN)
        return await handler(request)
    if presented is None:
        raise Unauthorized(BAD_WORKER)
    record = request.config_dict[SCHEDULER].registry.record(request.match_info.get("worker", ""))
    if record is None:
        raise NotFound("unknown worker; register again", field="worker")
    if not credentials.worker_ok(record, presented):
        raise Unauthorized(BAD_WORKER)
    if record.revoked:
        raise Unauthorized(REVOKED)
    return await handler(request)


async def _receiver_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A git service's delivery: no token, but signed with the receiver's secret by the
    service's own scheme (a 401, logged, when it is not)."""
    body = await read_body(request)  # within the size and time limits; kept for the handler
    info = request.match_info
    receivers = request.config_dict[RECEIVERS]
    request[RECEIVER] = receivers.verified(
        info.get("project", ""), info.get("kind", ""), request.headers, body
    )
    return await handler(request)


async def _swarmer_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The Swarmer API: a token as on the user surface (never a browser's session: it has no
    pages to guard a form with), read to GET and submit to POST, for the Swarmer project; a
    running Swarmer task's own token may report its result, nothing else."""
    query = request.query.get("token", "")
    if bearer(request) is None and query.startswith(JOB_PREFIX):
        # SWARMER_ADDRESS carries the job's token, since Swarmer's client sends no header;
        # only a job's token, and only to report (below).
        who = _job_caller(request, request.config_dict[CREDENTIALS].job_of(query))
    else:
        who = _identify(request, sessions=False)
    project = request.config_dict[SWARMER].store.project(request.config_dict[SWARMER].project_name)
    if who.scope is Scope.JOB:
        own = project is not None and project.id in who.projects
        if request.match_info.route.name != "swarmer_result" or not own:
            raise Forbidden("a job's token may only report its own Swarmer task's result")
        request[_CALLER] = who
        return await handler(request)
    need = Scope.READ if request.method in ("GET", "HEAD") else Scope.SUBMIT
    if not who.may(need):
        raise Forbidden(f"this needs a token of scope {need}; the one sent is {who.scope}")
    if who.projects and (project is None or not who.sees(project)):
        name = request.config_dict[SWARMER].project_name
        raise Forbidden(f"the token sent may not use project {name!r}, where Swarmer jobs are")
    request[_CALLER] = who
    return await handler(request)
