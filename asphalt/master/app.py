"""Wires the master together: store, credentials, scheduler, the two guarded surfaces (the user
API with its pages, and the worker protocol), middleware and background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator

from aiohttp import web

from asphalt import tls
from asphalt.config import MasterConfig
from asphalt.master.artifacts import Artifacts
from asphalt.master.core.credentials import Credentials
from asphalt.master.core.reaper import reap_forever
from asphalt.master.core.scheduler import Scheduler
from asphalt.master.hooks import Webhooks
from asphalt.master.hooks_sender import Sender
from asphalt.master.http import (
    addresses,
    admin,
    api,
    artifacts_api,
    auth,
    hooks_api,
    openapi,
    ops,
    receivers_api,
    retention_api,
    schedules_api,
    swarmer_api,
    templates_api,
    worker_api,
)
from asphalt.master.http.common import MAX_BODY, SCHEDULER, errors
from asphalt.master.metrics import Metrics
from asphalt.master.receivers import Receivers
from asphalt.master.retention import Retention
from asphalt.master.schedules import Schedules
from asphalt.master.store import Store
from asphalt.master.swarmer import Swarmer
from asphalt.model.hook_allow import HookAllow
from asphalt.web import app as pages

SSL_CONTEXT = web.AppKey("ssl_context", ssl.SSLContext)
SENDER = web.AppKey("hook_sender", Sender)


def build_app(config: MasterConfig) -> web.Application:
    """The master's aiohttp application; the store opens now and closes on cleanup."""
    app = web.Application(middlewares=[errors], client_max_size=config.max_body)
    app[MAX_BODY] = config.max_body
    fingerprint = _tls(app, config)
    store = Store(config.data_dir / "store", map_size=config.map_size)
    app[auth.CREDENTIALS] = Credentials(store, config.data_dir, fingerprint=fingerprint)
    app[auth.SETTINGS] = auth.Settings(
        mode=auth.Mode(config.auth),
        hosts=addresses.own_names(config),
        tls=fingerprint is not None,
    )
    app[admin.WORKER_COMMAND] = addresses.worker_command(config)
    # Recovery comes after the wiring below: the jobs it ends must reach the outbox and metrics.
    app[SCHEDULER] = Scheduler(store, config, recover=False)
    app[SCHEDULER].leases.job_token = app[auth.CREDENTIALS].job_token
    auth.protect(app, "user")  # before the pages' middleware, which serves pages itself
    worker_api.build(app)
    app.add_routes(api.routes)
    app.add_routes(admin.routes)
    app[ops.METRICS] = Metrics(app[SCHEDULER])
    app.add_routes(ops.routes)
    allow = HookAllow(config.hook_allow)
    hooks = app[hooks_api.HOOKS] = Webhooks(store, app[SCHEDULER].views, allow=allow)
    app[SENDER] = Sender(store, hooks, first_retry_s=config.hook_retry_s)
    hooks.on_made = app[SENDER].add
    app[SENDER].on_try = app[ops.METRICS].delivery_tried
    app[ops.METRICS].backlog = app[SENDER].backlog
    app[SCHEDULER].lifecycle.outbox = hooks.outbox
    app.add_routes(hooks_api.routes)
    app[schedules_api.SCHEDULES] = Schedules(app[SCHEDULER])
    app.add_routes(schedules_api.routes)
    retention = app[retention_api.RETENTION] = Retention(app[SCHEDULER], config.keep_days)
    app[auth.RECEIVERS] = Receivers(app[SCHEDULER])
    retention.forget += [hooks.drop_project, app[schedules_api.SCHEDULES].drop_project]
    retention.forget.append(app[auth.RECEIVERS].drop_project)
    retention.also_sweep.append(hooks.prune)
    app.add_routes(retention_api.routes)
    app.add_routes(templates_api.routes)
    app[artifacts_api.ARTIFACTS] = Artifacts(app[SCHEDULER], config.artifact_cap)
    app.add_routes(artifacts_api.routes)
    app.add_routes(receivers_api.routes)
    receivers_api.build(app)
    swarmer = app[auth.SWARMER] = Swarmer(
        app[SCHEDULER], project=config.swarmer_project, runtime=config.swarmer_runtime
    )
    hooks.shapes["swarmer"] = swarmer.callback_document
    retention.forget.append(swarmer.drop_project)
    swarmer_api.build(app)
    app.add_routes(openapi.routes)
    app[SCHEDULER].recover()
    pages.setup(app)
    app.cleanup_ctx.append(_background)
    app.on_shutdown.append(_closing)
    app.on_response_prepare.append(_flushed)
    return app


def _tls(app: web.Application, config: MasterConfig) -> str | None:
    """Set up TLS if asked for; the certificate's fingerprint, which join tokens pin."""
    if config.tls_cert is not None and config.tls_key is not None:
        cert, key = config.tls_cert, config.tls_key
    elif config.tls == "auto":
        config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        names = sorted(addresses.own_names(config))
        cert, key = tls.self_signed(config.data_dir, names=names)
    else:
        return None
    app[SSL_CONTEXT] = tls.server_context(cert, key)
    return tls.fingerprint(cert)


async def _flushed(request: web.Request, response: web.StreamResponse) -> None:
    """No answer leaves before the writes it may reflect are on disk (persist, then notify)."""
    await request.config_dict[SCHEDULER].store.flushed()


async def _closing(app: web.Application) -> None:
    app[SCHEDULER].close()


def stop_accepting(app: web.Application) -> None:
    """The master is stopping: no new work (503), long-polls answered, followers woken."""
    app[SCHEDULER].close()


async def _background(app: web.Application) -> AsyncIterator[None]:
    scheduler = app[SCHEDULER]
    reaper = asyncio.create_task(reap_forever(scheduler), name="reaper")
    sender = asyncio.create_task(app[SENDER].run(), name="hook-sender")
    firing = asyncio.create_task(app[schedules_api.SCHEDULES].run(), name="schedules")
    sweeping = asyncio.create_task(app[retention_api.RETENTION].run(), name="retention")
    yield
    for task in (reaper, sender, firing, sweeping):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    scheduler.signals.notify_all()
    scheduler.store.close()
