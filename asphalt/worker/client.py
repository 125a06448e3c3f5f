"""The worker's HTTP calls to its master, one method per protocol message."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import aiohttp

from asphalt import protocol
from asphalt.protocol import HeartbeatReply, Lease, Registration, Welcome


class MasterError(Exception):
    """A call to the master failed."""


class Unreachable(MasterError):
    """The master did not answer (down, restarting, partitioned, or it answered 5xx)."""


class UnknownWorker(MasterError):
    """The master does not know this worker id (404); register again."""


class Stale(MasterError):
    """The master no longer leases this attempt to this worker (409)."""


class MasterClient:
    def __init__(self, base_url: str, *, poll_hold_s: float = 25.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.poll_hold_s = poll_hold_s
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> MasterClient:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=10))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(
        self,
        path: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        timeout_s: float = 30.0,
        params: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        assert self._session is not None, "use MasterClient as an async context manager"
        try:
            async with self._session.post(
                self.base_url + path,
                json=json,
                data=data,
                params=params,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as response:
                body = await response.json() if response.status not in (204,) else None
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise Unreachable(f"{path}: {e!r}") from e
        if status >= 500:
            raise Unreachable(f"{path}: HTTP {status}: {body}")
        if status == 404:
            raise UnknownWorker(str(body))
        if status == 409:
            raise Stale(str(body))
        if status >= 400:
            raise MasterError(f"{path}: HTTP {status}: {body}")
        return status, body

    async def register(self, reg: Registration) -> Welcome:
        _, body = await self._call(protocol.REGISTER, json=asdict(reg))
        return Welcome(**body)

    async def lease(self, worker: str) -> Lease | None:
        path = protocol.LEASE.format(worker=worker)
        status, body = await self._call(path, json={}, timeout_s=self.poll_hold_s + 15)
        return None if status == 204 else Lease(**body)

    async def heartbeat(
        self, worker: str, running: list[tuple[str, int]], hold_s: float, *, draining: bool = False
    ) -> HeartbeatReply:
        path = protocol.HEARTBEAT.format(worker=worker)
        body = {"running": running, "draining": draining}
        _, body = await self._call(path, json=body, timeout_s=hold_s + 15)
        return HeartbeatReply(**body)

    async def output(self, worker: str, job: str, attempt: int, offset: int, data: bytes) -> int:
        path = protocol.OUTPUT.format(worker=worker, job=job)
        params = {"attempt": str(attempt), "offset": str(offset)}
        _, body = await self._call(path, data=data, params=params)
        return int(body["received"])

    async def finish(self, worker: str, job: str, fin: protocol.Finish) -> Lease | None:
        """Report the end; with fin.next the answer may carry the next job for this slot."""
        _, body = await self._call(protocol.FINISH.format(worker=worker, job=job), json=asdict(fin))
        lease = body.get("lease") if isinstance(body, dict) else None
        return Lease(**lease) if lease else None

    async def release(self, worker: str, job: str, attempt: int) -> None:
        await self._call(protocol.RELEASE.format(worker=worker, job=job), json={"attempt": attempt})

    async def deregister(self, worker: str) -> None:
        await self._call(protocol.DEREGISTER.format(worker=worker), json={}, timeout_s=5)
