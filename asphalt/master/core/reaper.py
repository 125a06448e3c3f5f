"""The background sweep that ends jobs whose worker stopped renewing the lease, queues retries
whose backoff is over, and fails jobs no live worker has been able to run for too long."""

from __future__ import annotations

import asyncio

from asphalt import log
from asphalt.master.core.scheduler import Scheduler

_log = log.get("asphalt.reaper")


async def reap_forever(scheduler: Scheduler, *, interval_s: float = 1.0) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            scheduler.leases.expire_leases()
            scheduler.dispatch.promote_due()
            scheduler.unrunnable.sweep()
        except Exception:  # one bad sweep must not stop the next
            _log.exception("reap_failed")
