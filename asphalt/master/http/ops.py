"""What operations tools call: `/healthz` (the process answers), `/readyz` (it can take work:
the store is open with room to write, and the master is not stopping), both open to anyone and
saying nothing more than that; and `/metrics` for Prometheus, which needs a `read` token like
any route (auth.py), one not limited to projects, as it counts across all of them."""

from __future__ import annotations

from aiohttp import web

from asphalt.master.http.common import SCHEDULER, reply
from asphalt.master.metrics import CONTENT_TYPE, Metrics

METRICS = web.AppKey("metrics", Metrics)
MIN_ROOM = 1 << 20  # bytes of free map below which the master is not ready for more work

routes = web.RouteTableDef()


@routes.get("/healthz", name="healthz")
async def healthz(request: web.Request) -> web.Response:
    return reply({"status": "ok"})


@routes.get("/readyz", name="readyz")
async def readyz(request: web.Request) -> web.Response:
    scheduler = request.config_dict[SCHEDULER]
    store = scheduler.store
    ready = not scheduler.closing and not store.closed
    if ready:
        used, size = store.usage()
        ready = size - used >= MIN_ROOM
    return reply({"status": "ready" if ready else "not ready"}, 200 if ready else 503)


@routes.get("/metrics", name="metrics")
async def metrics(request: web.Request) -> web.Response:
    response = web.Response(body=request.config_dict[METRICS].text())
    response.headers["Content-Type"] = CONTENT_TYPE
    return response
