"""Sends the outbox: each pending delivery is POSTed to its hook, signed, until a 2xx comes back;
a failed try is retried with backoff and jitter for up to a day. It runs beside the core and
never blocks it: a slow or dead receiver holds only its own tries (at most SENDING at once, each
cut off after TIMEOUT_S). At start it takes up every delivery left pending, so a master killed at
any point delivers after its restart (at least once: receivers dedupe by Asphalt-Delivery)."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import random
import time
from collections.abc import Callable

import aiohttp

from asphalt import log
from asphalt.master import hook_reach
from asphalt.master.hooks import Webhooks
from asphalt.master.store import Store
from asphalt.master.store import hooks as tables
from asphalt.model.hooks import (
    FIRST_RETRY_S,
    GIVE_UP_S,
    MAX_ANSWER,
    TIMEOUT_S,
    Delivery,
    DeliveryState,
    retry_delay,
    signature,
)
from asphalt.wire import replace

_log = log.get("asphalt.hooks")
SENDING = 8  # tries in flight at once
USER_AGENT = "Asphalt-Hookshot/1"


class Sender:
    def __init__(
        self,
        store: Store,
        hooks: Webhooks,
        *,
        first_retry_s: float = FIRST_RETRY_S,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.hooks = hooks
        self.first_retry_s = first_retry_s
        self.now = now
        self.on_try: Callable[[str], None] = lambda outcome: None  # the metrics hear of each
        self._due: list[tuple[float, str]] = []  # (next try, delivery id), soonest first
        self._queued: set[str] = set()
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(SENDING)
        self._tries: set[asyncio.Task[None]] = set()

    def add(self, deliveries: list[Delivery]) -> None:
        """Deliveries just committed (new, or sent again): queue them for their time."""
        for delivery in deliveries:
            self._queued.add(delivery.id)
            heapq.heappush(self._due, (delivery.next_at, delivery.id))
        self._wake.set()

    def backlog(self) -> int:
        """Deliveries waiting to be sent (for the metrics)."""
        return len(self._queued)

    async def run(self) -> None:
        """Send until cancelled; the tries in flight are cancelled with it."""
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        self._load()  # what an earlier run of the master left to send
        reach = hook_reach.connector(self.hooks.allow)
        async with aiohttp.ClientSession(timeout=timeout, connector=reach) as session:
            try:
                while True:
                    self._wake.clear()
                    await self._send_due(session)
                    wait = self._due[0][0] - self.now() if self._due else 60.0
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), max(0.05, min(wait, 60.0)))
            finally:
                for task in list(self._tries):
                    task.cancel()
                await asyncio.gather(*self._tries, return_exceptions=True)

    def _load(self) -> None:
        for delivery in self.store.look(tables.outbox):
            if delivery.id not in self._queued:
                self._queued.add(delivery.id)
                heapq.heappush(self._due, (delivery.next_at, delivery.id))

    async def _send_due(self, session: aiohttp.ClientSession) -> None:
        while self._due and self._due[0][0] <= self.now():
            _, delivery_id = heapq.heappop(self._due)
            await self._slots.acquire()
            task = asyncio.create_task(self._try(session, delivery_id))
            self._tries.add(task)
            task.add_done_callback(self._tries.discard)

    async def _try(self, session: aiohttp.ClientSession, delivery_id: str) -> None:
        again = False  # tried and due again later: it stays queued
        try:
            delivery = self.store.look(lambda t: tables.delivery(t, delivery_id))
            if delivery is None or delivery.state is not DeliveryState.PENDING:
                return
            if delivery.next_at > self.now() + 1.0:  # an older entry: a later one is queued
                again = True
                return
            hook = self.hooks.find(delivery.hook)
            if hook is None:
                gone = "its hook was deleted (or, for a task's callback, its task or its secret)"
                self._save(_ended(delivery, gone, self.now()))
                return
            refused = hook_reach.refusal(self.hooks.allow, hook.url)
            if refused is not None:
                status, answer = None, refused
            else:
                status, answer = await self._post(session, hook.url, hook.secret, delivery)
            again = self._save(self._after_try(delivery, status, answer))
        except Exception:  # a bug here must not stop the sender: the delivery stays pending
            _log.exception("delivery_failed", delivery=delivery_id)
        finally:
            if not again:
                self._queued.discard(delivery_id)  # the outbox has it, if it is still to go
            self._slots.release()

    async def _post(
        self, session: aiohttp.ClientSession, url: str, secret: str, delivery: Delivery
    ) -> tuple[int | None, str]:
        body = delivery.body.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Asphalt-Event": delivery.event,
            "Asphalt-Delivery": delivery.id,
            "Asphalt-Signature": signature(secret, int(self.now()), body),
        }
        try:
            async with session.post(url, data=body, headers=headers, allow_redirects=False) as r:
                text = (await r.content.read(MAX_ANSWER)).decode("utf-8", "replace")
                return r.status, text
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            why = f"no answer within {TIMEOUT_S:g} s" if isinstance(e, TimeoutError) else str(e)
            return None, why[:MAX_ANSWER] or type(e).__name__

    def _after_try(self, delivery: Delivery, status: int | None, answer: str) -> Delivery:
        now = self.now()
        tried = replace(
            delivery, tries=delivery.tries + 1, last_status=status, last_answer=answer, last_at=now
        )
        if status is not None and 200 <= status < 300:
            _log.debug("delivered", delivery=delivery.id, status=status)
            return replace(tried, state=DeliveryState.DELIVERED)
        next_at = now + retry_delay(tried.tries, random.random(), self.first_retry_s)
        if next_at > (delivery.retry_from or delivery.created_at) + GIVE_UP_S:
            _log.warning("delivery_given_up", delivery=delivery.id, tries=tried.tries)
            return replace(tried, state=DeliveryState.FAILED)
        _log.info("delivery_retry", delivery=delivery.id, status=status, tries=tried.tries)
        return replace(tried, next_at=next_at)

    def _save(self, delivery: Delivery) -> bool:
        """Keep how the try went; whether the delivery is due again (and queued for it)."""
        self.store.change(lambda t: tables.put_delivery(t, delivery))
        pending = delivery.state is DeliveryState.PENDING
        self.on_try("retry" if pending else str(delivery.state))
        if not pending:
            return False
        heapq.heappush(self._due, (delivery.next_at, delivery.id))
        self._wake.set()  # the loop may be waiting past this try's time
        return True


def _ended(delivery: Delivery, why: str, now: float) -> Delivery:
    return replace(delivery, state=DeliveryState.FAILED, last_answer=why, last_at=now)
