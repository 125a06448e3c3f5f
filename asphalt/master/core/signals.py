"""Wake-ups by key (a job's output grew, a worker has a cancel to collect); nothing persisted."""

from __future__ import annotations

import asyncio
import contextlib


class Signals:
    """Each key has an event that is set and replaced on `notify`, waking every waiter once."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def notify(self, key: str) -> None:
        event = self._events.pop(key, None)
        if event is not None:
            event.set()

    def notify_all(self) -> None:
        for key in list(self._events):
            self.notify(key)

    async def wait(self, key: str, timeout_s: float) -> bool:
        """Wait for the next notify of `key`; False when `timeout_s` passed first."""
        event = self._events.setdefault(key, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await event.wait()
                return True
        return False
