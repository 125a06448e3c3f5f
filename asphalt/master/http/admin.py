"""The admin API: tokens (make, list, revoke), revoking workers and a new join token."""

from __future__ import annotations

from aiohttp import web

from asphalt.master.core.inputs import parse_token
from asphalt.master.http import auth
from asphalt.master.http.common import SCHEDULER, read_json, reply
from asphalt.model.records import Scope

routes = web.RouteTableDef()
# A submit token can run host jobs on the master's own worker, as the master's user, on its box:
# such a job could read admin.token or call the API from loopback. Said when one is made.
OWN_WORKER_WARNING = (
    "this master runs a worker of its own, whose host jobs run as the master's user on its "
    "box: a job sent with this token could read the master's data directory (admin.token) or "
    "call it from loopback. To keep scopes apart, start the master with -no-worker and run "
    "workers on other machines"
)


def token_warning(request: web.Request, scope: Scope) -> str | None:
    own = request.config_dict[SCHEDULER].config.own_worker
    return OWN_WORKER_WARNING if own and scope is Scope.SUBMIT else None


WORKER_COMMAND = web.AppKey("worker_command", str)  # how to start a worker, without the token


def join_command(request: web.Request, token: str) -> str:
    return f"{request.config_dict[WORKER_COMMAND]} -join {token}"


@routes.get("/tokens", name="tokens")
async def list_tokens(request: web.Request) -> web.Response:
    credentials = request.config_dict[auth.CREDENTIALS]
    return reply({"tokens": [t.view() for t in credentials.listed()]})


@routes.post("/tokens", name="create_token")
async def create_token(request: web.Request) -> web.Response:
    given = parse_token(await read_json(request))
    credentials = request.config_dict[auth.CREDENTIALS]
    token, secret = credentials.create(given.name, given.scope, given.projects)
    # The secret is in this answer and nowhere else: the master keeps only its hash.
    answer = {**token.view(), "token": secret}
    if warning := token_warning(request, given.scope):
        answer["warning"] = warning
    return reply(answer, 201)


@routes.delete("/tokens/{token}", name="revoke_token")
async def revoke_token(request: web.Request) -> web.Response:
    credentials = request.config_dict[auth.CREDENTIALS]
    token = credentials.revoke(request.match_info["token"])
    return reply({**token.view(), "revoked": True})


@routes.post("/tokens/{token}/revoke", name="revoke_token_post")
async def revoke_token_post(request: web.Request) -> web.StreamResponse:
    """The same as DELETE /tokens/{token}, for a page's form (forms cannot send DELETE)."""
    return await revoke_token(request)


@routes.post("/workers/join-token", name="join_token")
async def new_join_token(request: web.Request) -> web.Response:
    token = request.config_dict[auth.CREDENTIALS].rotate_join()
    return reply({"token": token, "command": join_command(request, token)}, 201)


@routes.post("/workers/{worker}/revoke", name="revoke_worker")
async def revoke_worker(request: web.Request) -> web.Response:
    scheduler = request.config_dict[SCHEDULER]
    worker = scheduler.workers.revoke(request.match_info["worker"])
    views = scheduler.registry.views(scheduler.now_m(), now=scheduler.now(), every=True)
    return reply(next(v for v in views if v["id"] == worker.id))
