"""The admin API: tokens (make, list, revoke), revoking workers and a new join token."""

from __future__ import annotations

from aiohttp import web

from asphalt.master import auth
from asphalt.master.http import SCHEDULER, read_json, reply
from asphalt.master.inputs import parse_token

routes = web.RouteTableDef()
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
    return reply({**token.view(), "token": secret}, 201)


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
    worker = scheduler.revoke(request.match_info["worker"])
    views = scheduler.registry.views(scheduler.now_m(), now=scheduler.now(), every=True)
    return reply(next(v for v in views if v["id"] == worker.id))
