"""The worker's HTTP calls to its master, one method per protocol message."""

from __future__ import annotations

from typing import IO, Any

import aiohttp

from asphalt import protocol
from asphalt.errors import BadRequest
from asphalt.protocol import (
    Frame,
    HeartbeatReply,
    Lease,
    M,
    Manifest,
    Registration,
    Welcome,
    parse_join,
)

ARTIFACT_TIMEOUT_S = 3600.0  # for one file, however large and slow the link


class MasterError(Exception):
    """A call to the master failed."""


class Unreachable(MasterError):
    """The master did not answer (down, restarting, partitioned, or it answered 5xx)."""


class UnknownWorker(MasterError):
    """The master does not know this worker id (404); register again."""


class Stale(MasterError):
    """The master no longer leases this attempt to this worker (409)."""


class Refused(MasterError):
    """The master refused this worker's credential (401), or is not the master the join token
    pins; trying again will not help, a person has to act (the message says how)."""


def pin_of(join: str | None) -> str | None:
    """The certificate fingerprint a join token pins, if it pins one."""
    parsed = parse_join(join) if join else None
    return parsed[1] if parsed else None


async def proves_pin(url: str, pin: str) -> bool:
    """Whether the master at `url` serves HTTPS with the certificate `pin` names."""
    if not url.startswith("https://"):
        return False
    timeout = aiohttp.ClientTimeout(total=10)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url + "/login", ssl=aiohttp.Fingerprint(bytes.fromhex(pin))) as response,
        ):
            await response.read()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return False
    return True


class MasterClient:
    def __init__(
        self, base_url: str, *, join: str | None = None, poll_hold_s: float = 25.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.poll_hold_s = poll_hold_s
        self._join = join
        self._secret: str | None = None  # this worker's own credential, from its registration
        pin = pin_of(join)
        if pin is not None and not self.base_url.startswith("https://"):
            raise ValueError("the join token pins a TLS certificate: give the master as https://")
        self._ssl: aiohttp.Fingerprint | bool = (
            aiohttp.Fingerprint(bytes.fromhex(pin)) if pin else True
        )
        self._session: aiohttp.ClientSession | None = None

    def auth_headers(self) -> dict[str, str]:
        """The header that carries this worker's credential (empty before it registers)."""
        return {"Authorization": f"Bearer {self._secret}"} if self._secret else {}

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
        data: bytes | IO[bytes] | None = None,
        timeout_s: float = 30.0,
        method: str = "POST",
        params: dict[str, str] | None = None,
        credential: str | None = None,
        content_type: str | None = None,
    ) -> tuple[int, Any]:
        assert self._session is not None, "use MasterClient as an async context manager"
        headers = self.auth_headers()
        if credential is not None:
            headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        if content_type is not None:
            headers = headers | {"Content-Type": content_type}
        try:
            async with self._session.request(
                method,
                self.base_url + path,
                json=json,
                data=data,
                params=params,
                headers=headers,
                ssl=self._ssl,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as response:
                body = await response.json() if response.status not in (204,) else None
                status = response.status
        except aiohttp.ServerFingerprintMismatch as e:
            raise Refused(
                f"the master at {self.base_url} is not the one the join token pins: its TLS "
                f"certificate has SHA-256 {e.got.hex()}, the token expects {e.expected.hex()}; "
                "get the join token from that master again"
            ) from e
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise Unreachable(f"{path}: {e!r}") from e
        if status >= 500:
            raise Unreachable(f"{path}: HTTP {status}: {body}")
        if status == 401:
            error = body.get("error") if isinstance(body, dict) else None
            raise Refused(str(error or body))
        if status == 404:
            raise UnknownWorker(str(body))
        if status == 409:
            raise Stale(str(body))
        if status == 400 and isinstance(body, dict) and body.get("field") == "protocol":
            raise Refused(str(body.get("error")))  # another release: upgrading is a person's job
        if status >= 400:
            raise MasterError(f"{path}: HTTP {status}: {body}")
        return status, body

    async def register(self, reg: Registration) -> Welcome:
        """Join with the join token; later calls carry the credential the master answers with."""
        _, body = await self._call(
            protocol.REGISTER, json=protocol.to_json(reg), credential=self._join or ""
        )
        welcome = _message(body, Welcome)
        self._secret = welcome.secret
        return welcome

    async def lease(self, worker: str) -> Lease | None:
        path = protocol.LEASE.format(worker=worker)
        status, body = await self._call(path, json={}, timeout_s=self.poll_hold_s + 15)
        return None if status == 204 else _message(body, Lease)

    async def heartbeat(
        self, worker: str, running: list[tuple[str, int]], hold_s: float, *, draining: bool = False
    ) -> HeartbeatReply:
        path = protocol.HEARTBEAT.format(worker=worker)
        body = {"running": running, "draining": draining}
        _, body = await self._call(path, json=body, timeout_s=hold_s + 15)
        return _message(body, HeartbeatReply)

    async def output(
        self, worker: str, job: str, attempt: int, offset: int, data: bytes | list[Frame]
    ) -> int:
        """Send output that begins at `offset`: stdout, or pieces of either stream."""
        path = protocol.OUTPUT.format(worker=worker, job=job)
        params = {"attempt": str(attempt), "offset": str(offset)}
        if isinstance(data, bytes):
            _, body = await self._call(path, data=data, params=params)
        else:
            raw = protocol.pack_frames(data)
            _, body = await self._call(path, data=raw, params=params, content_type=protocol.FRAMES)
        return int(body["received"])

    async def finish(self, worker: str, job: str, fin: protocol.Finish) -> Lease | None:
        """Report the end; with fin.next the answer may carry the next job for this slot."""
        _, body = await self._call(
            protocol.FINISH.format(worker=worker, job=job), json=protocol.to_json(fin)
        )
        lease = body.get("lease") if isinstance(body, dict) else None
        return _message(lease, Lease) if lease else None

    async def artifacts(self, worker: str, job: str, attempt: int, manifest: Manifest) -> list[str]:
        """Announce the files a job left; the paths the master wants sent."""
        path = protocol.ARTIFACTS.format(worker=worker, job=job)
        params = {"attempt": str(attempt)}
        _, body = await self._call(path, json=protocol.to_json(manifest), params=params)
        return [str(p) for p in body["send"]]

    async def artifact(
        self, worker: str, job: str, attempt: int, name: str, file: IO[bytes]
    ) -> None:
        """Send one announced file, streamed from `file`."""
        path = protocol.ARTIFACTS.format(worker=worker, job=job)
        params = {"attempt": str(attempt), "path": name}
        await self._call(
            path,
            data=file,
            params=params,
            method="PUT",
            timeout_s=ARTIFACT_TIMEOUT_S,
            content_type="application/octet-stream",
        )

    async def release(self, worker: str, job: str, attempt: int) -> None:
        await self._call(protocol.RELEASE.format(worker=worker, job=job), json={"attempt": attempt})

    async def deregister(self, worker: str) -> None:
        await self._call(protocol.DEREGISTER.format(worker=worker), json={}, timeout_s=5)


def _message(body: Any, kind: type[M]) -> M:
    """What the master sent, checked as the master checks what a worker sends."""
    try:
        return protocol.read(body, kind)
    except BadRequest as e:
        raise MasterError(
            f"the master sent a {kind.__name__.lower()} that is not valid: {e}"
        ) from None
