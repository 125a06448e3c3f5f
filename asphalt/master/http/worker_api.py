"""The worker protocol's HTTP handlers: register, lease, heartbeat, output, finish.

They form the `/_worker` sub-application, whose guard (asphalt.master.http.auth) lets only the join
token register and only a worker's own credential make its other calls.
"""

from __future__ import annotations

from aiohttp import web

from asphalt import protocol
from asphalt.errors import BadRequest
from asphalt.master.core.credentials import Credentials
from asphalt.master.core.inputs import whole
from asphalt.master.http import auth
from asphalt.master.http.artifacts_api import ARTIFACTS
from asphalt.master.http.common import SCHEDULER, read_body, read_json, reply
from asphalt.model.members import Worker
from asphalt.protocol import Finish, Heartbeat, Manifest, Registration, Release, Welcome, to_json

routes = web.RouteTableDef()


def build(parent: web.Application) -> web.Application:
    """The worker protocol as a sub-application of `parent`, mounted at /_worker."""
    app = web.Application()
    app.router.add_routes(
        [
            web.RouteDef(r.method, r.path.removeprefix(protocol.PREFIX), r.handler, r.kwargs)
            for r in routes
            if isinstance(r, web.RouteDef)
        ]
    )
    auth.protect(app, "worker")
    parent.add_subapp(protocol.PREFIX, app)
    return app


def _worker(request: web.Request) -> Worker:
    return request.config_dict[SCHEDULER].workers.worker(request.match_info["worker"])


def _connected(request: web.Request) -> bool:
    return request.transport is not None and not request.transport.is_closing()


def _int_query(request: web.Request, name: str) -> int:
    raw = request.query.get(name, "")
    if not whole(raw):
        raise BadRequest(f"{name} must be a whole number", field=name)
    return int(raw)


@routes.post(protocol.REGISTER, name="register")
async def register(request: web.Request) -> web.Response:
    scheduler = request.config_dict[SCHEDULER]
    reg = protocol.read(await read_json(request), Registration)
    protocol.check_protocol(reg)
    secret, secret_hash = Credentials.worker_secret()
    embedded = request.config_dict[auth.CREDENTIALS].embedded(auth.bearer(request) or "")
    worker = scheduler.workers.register(reg, secret_hash, embedded=embedded)
    config = scheduler.config
    welcome = Welcome(
        worker=worker.id,
        secret=secret,
        poll_hold_s=config.poll_hold_s,
        heartbeat_s=config.heartbeat_s,
        lease_s=config.lease_s,
    )
    return reply(to_json(welcome), 201)


@routes.post(protocol.LEASE, name="lease")
async def lease(request: web.Request) -> web.Response:
    worker = _worker(request)
    found = await request.config_dict[SCHEDULER].leases.lease(worker, lambda: _connected(request))
    if found is None:
        return web.Response(status=204)
    return reply(to_json(found))


@routes.post(protocol.HEARTBEAT, name="heartbeat")
async def heartbeat(request: web.Request) -> web.Response:
    beat = protocol.read(await read_json(request), Heartbeat)
    worker = _worker(request)  # looked up after the await: the record as it is now
    return reply(to_json(await request.config_dict[SCHEDULER].leases.heartbeat(worker, beat)))


@routes.post(protocol.OUTPUT, name="output")
async def output(request: web.Request) -> web.Response:
    attempt, offset = _int_query(request, "attempt"), _int_query(request, "offset")
    data = await read_body(request)
    framed = request.content_type == protocol.FRAMES
    frames = protocol.unpack_frames(data) if framed else [(protocol.STDOUT, data)]
    worker = _worker(request)
    job = request.match_info["job"]
    received = request.config_dict[SCHEDULER].leases.output(worker, job, attempt, offset, frames)
    return reply({"received": received})


@routes.post(protocol.ARTIFACTS, name="artifacts_manifest")
async def artifacts_manifest(request: web.Request) -> web.Response:
    attempt = _int_query(request, "attempt")
    given = protocol.read(await read_json(request), Manifest)
    worker = _worker(request)
    kept = request.config_dict[ARTIFACTS].manifest(
        worker, request.match_info["job"], attempt, given
    )
    return reply({"send": kept})


@routes.put(protocol.ARTIFACTS, name="artifact_upload")
async def artifact_upload(request: web.Request) -> web.Response:
    """One announced file, streamed: stored piece by piece as it comes, never whole in memory."""
    attempt = _int_query(request, "attempt")
    path = request.query.get("path", "")
    worker = _worker(request)
    artifacts = request.config_dict[ARTIFACTS]
    stored = await artifacts.receive(
        worker, request.match_info["job"], attempt, path, request.content.read
    )
    return reply({"path": stored.path, "size": stored.size, "sha256": stored.sha256}, 201)


@routes.post(protocol.FINISH, name="finish")
async def finish(request: web.Request) -> web.Response:
    fin = protocol.read(await read_json(request), Finish)
    worker = _worker(request)
    scheduler = request.config_dict[SCHEDULER]
    job = scheduler.leases.finish(worker, request.match_info["job"], fin)
    answer: dict[str, object] = {"state": job.state}
    if fin.next:
        found = scheduler.leases.next_for(worker, request.match_info["job"], fin.attempt)
        if found is not None and not _connected(request):
            scheduler.leases.unsent(found)
        elif found is not None:
            answer["lease"] = to_json(found)
    return reply(answer)


@routes.post(protocol.RELEASE, name="release")
async def release(request: web.Request) -> web.Response:
    attempt = protocol.read(await read_json(request), Release).attempt
    worker = _worker(request)
    job = request.config_dict[SCHEDULER].leases.release(worker, request.match_info["job"], attempt)
    return reply({"state": job.state})


@routes.post(protocol.DEREGISTER, name="deregister")
async def deregister(request: web.Request) -> web.Response:
    request.config_dict[SCHEDULER].workers.deregister(_worker(request))
    return reply({"ok": True})
