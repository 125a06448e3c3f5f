"""Wires the master together: store, scheduler, routes, middleware and background tasks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from asphalt.config import MasterConfig
from asphalt.master import api, dispatch
from asphalt.master.http import MAX_BODY, SCHEDULER, errors
from asphalt.master.reaper import reap_forever
from asphalt.master.scheduler import Scheduler
from asphalt.master.store import Store
from asphalt.web import app as pages


def build_app(config: MasterConfig) -> web.Application:
    """The master's aiohttp application; the store opens now and closes on cleanup."""
    app = web.Application(middlewares=[errors], client_max_size=config.max_body)
    app[MAX_BODY] = config.max_body
    store = Store(config.data_dir / "store", map_size=config.map_size)
    scheduler = Scheduler(store, config)
    app[SCHEDULER] = scheduler
    app.add_routes(dispatch.routes)
    app.add_routes(api.routes)
    pages.setup(app)
    app.cleanup_ctx.append(_background)
    app.on_shutdown.append(_closing)
    app.on_response_prepare.append(_flushed)
    return app


async def _flushed(request: web.Request, response: web.StreamResponse) -> None:
    """No answer leaves before the writes it may reflect are on disk (persist, then notify)."""
    await request.app[SCHEDULER].store.flushed()


async def _closing(app: web.Application) -> None:
    app[SCHEDULER].close()


def stop_accepting(app: web.Application) -> None:
    """The master is stopping: no new work (503), long-polls answered, followers woken."""
    app[SCHEDULER].close()


async def _background(app: web.Application) -> AsyncIterator[None]:
    scheduler = app[SCHEDULER]
    reaper = asyncio.create_task(reap_forever(scheduler), name="reaper")
    yield
    reaper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reaper
    scheduler.signals.notify_all()
    scheduler.store.close()
