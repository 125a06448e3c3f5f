"""Real asphalt processes for end-to-end tests, and a small HTTP client that reads like curl."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from asphalt.config import MasterConfig
from asphalt.protocol import PROTOCOL, STDERR, STDOUT, Finish, Registration
from asphalt.worker.client import MasterClient

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(check: Callable[[], T | None], timeout_s: float = 30.0, what: str = "") -> T:
    """Poll `check` until it returns something truthy; fail with `what` after the timeout."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except (OSError, urllib.error.URLError) as e:
            last = e
        else:
            if result:
                return result
            last = result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or check}: last saw {last!r}")


class Http:
    """JSON over HTTP to one master, returning (status, body); with a token, sent on every call."""

    def __init__(self, base: str, token: str | None = None) -> None:
        self.base = base
        self.auth = {"Authorization": f"Bearer {token}"} if token else {}

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        # What curl --data sends, to prove the body is read as JSON whatever the type says.
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
        for key, value in {**self.auth, **(headers or {})}.items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                text = response.read().decode()
                status = response.status
        except urllib.error.HTTPError as e:
            text, status = e.read().decode(), e.code
        try:
            return status, json.loads(text) if text else None
        except ValueError:
            return status, text

    def get(self, path: str) -> Any:
        status, body = self.call("GET", path)
        assert status == 200, (path, status, body)
        return body

    def post(self, path: str, body: Any, expect: int = 201) -> Any:
        status, answer = self.call("POST", path, body)
        assert status == expect, (path, status, answer)
        return answer

    def text(self, path: str) -> str:
        request = urllib.request.Request(self.base + path, headers=self.auth)
        with urllib.request.urlopen(request, timeout=30) as response:
            return str(response.read().decode())

    def task_done(self, project: str, task: str) -> dict[str, Any] | None:
        body: dict[str, Any] = self.get(f"/projects/{project}/tasks/{task}")
        return body if body["status"] == "complete" else None


class Proc:
    """One asphalt process started by a test; only it is ever signalled."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self._log = log_path.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "asphalt", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, sig)

    def stop(self, timeout_s: float = 20.0) -> int:
        self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            return self.popen.wait(5)
        finally:
            self._log.close()

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.popen.wait(10)
        self._log.close()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_master(data: Path, port: int, *extra: str, ready: int = 200) -> tuple[Proc, Http]:
    """A master on loopback, once a bare GET / answers `ready` (401 for one with -auth always)."""
    args = ["-host", "127.0.0.1", "-port", str(port), "-data", str(data), "-log", "json"]
    args += ["-docker-network", "none", "-grace", "2", *extra]
    proc = Proc(args, data.parent / f"master-{port}.log")
    http = Http(f"http://127.0.0.1:{port}")

    def up() -> bool:
        if proc.popen.poll() is not None:
            raise AssertionError(f"master exited {proc.popen.returncode}:\n{proc.logs()}")
        return http.call("GET", "/")[0] == ready

    try:
        wait_until(up, 30, "the master to serve")
    except AssertionError:
        proc.stop()
        raise
    return proc, http


def join_token(data: Path) -> str:
    """The join token a master keeps in its data directory."""
    return (data / "join.token").read_text().strip()


def start_worker(master_port: int, log_dir: Path, *extra: str, join: str | None = None) -> Proc:
    args = ["-master", f"127.0.0.1:{master_port}", "-log", "json", "-docker-network", "none"]
    args += ["-join", join] if join else []
    args += ["-state", str(log_dir / "worker-state")]
    args += ["-grace", "2", *extra]
    return Proc(args, log_dir / f"worker-{time.monotonic_ns()}.log")


# In-process masters: real aiohttp servers on loopback, with short timings for tests.
REG = Registration(
    name="w", host="h", types=(), runtimes=("host",), slots=1, version="t", protocol=PROTOCOL
)
CONFIG = MasterConfig(host="127.0.0.1", poll_hold_s=0.3, heartbeat_s=0.2, lease_s=1.0)


class Master:
    def __init__(self, server: TestServer, session: aiohttp.ClientSession, data: Path) -> None:
        self.server = server
        self.session = session
        self.data = data
        self.url = str(server.make_url("")).rstrip("/")
        self.join = join_token(data)
        self.admin = (data / "admin.token").read_text().strip()

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        async with self.session.request(method, self.url + path, json=body, **kw) as r:
            try:
                return r.status, await r.json(content_type=None)
            except ValueError:
                return r.status, None

    async def new_task(self, jobs: dict[str, Any], task: str = "t") -> None:
        """Task `task` in project p (made if need be)."""
        assert (await self.call("POST", "/", {"name": "p"}))[0] in (201, 409)
        status, body = await self.call("POST", "/projects/p", {"id": task, "jobs": jobs})
        assert status == 201, body

    async def task(self, project: str, task: str) -> dict[str, Any]:
        status, body = await self.call("GET", f"/projects/{project}/tasks/{task}")
        assert status == 200, body
        result: dict[str, Any] = body
        return result


MasterFactory = Callable[..., Awaitable[Master]]


class Cluster:
    """A master and its workers as real processes, started by one test and stopped after it.

    `defaults` go to every master start (e.g. "-no-worker" and short leases)."""

    def __init__(self, tmp: Path, *defaults: str) -> None:
        self.tmp = tmp
        self.data = tmp / "data"
        self.port = free_port()
        self.defaults = defaults
        self.procs: list[Proc] = []
        self.master_proc: Proc | None = None

    def master(self, *extra: str, ready: int = 200) -> Http:
        proc, http = start_master(self.data, self.port, *self.defaults, *extra, ready=ready)
        self.procs.append(proc)
        self.master_proc = proc
        return http

    def worker(self, *extra: str, port: int | None = None) -> Proc:
        """A worker for this cluster's master, with its join token unless -join is given."""
        join = None if "-join" in extra else join_token(self.data)
        proc = start_worker(port or self.port, self.tmp, *extra, join=join)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


class Output:
    """A runtime's output sink that remembers each piece, and says when the first came."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.streams: dict[int, list[bytes]] = {STDOUT: [], STDERR: []}
        self.first = asyncio.Event()

    async def __call__(self, chunk: bytes, stream: int) -> None:
        self.pieces.append(chunk)
        self.streams[stream].append(chunk)
        self.first.set()

    @property
    def text(self) -> str:
        return b"".join(self.pieces).decode()

    def of(self, stream: int) -> str:
        """What came on one stream."""
        return b"".join(self.streams[stream]).decode()


async def end_jobs(m: Master, count: int = 1, state: str = "succeeded", status: int = 0) -> None:
    """Lease the next `count` jobs as a worker would, and end each without output."""
    async with MasterClient(m.url, join=m.join) as client:
        worker = (await client.register(REG)).worker
        for _ in range(count):
            lease = await client.lease(worker)
            assert lease is not None
            fin = Finish(
                attempt=lease.attempt,
                state=state,
                status=status,
                reason=None,  # type: ignore[arg-type]
                started_at=1.0,
                ended_at=2.0,
            )
            await client.finish(worker, lease.job, fin)


class Seen:
    """What a webhook receiver was sent: (path, headers, body) of each POST, oldest first."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], bytes]] = []

    async def until(self, count: int, timeout_s: float = 5.0) -> None:
        for _ in range(int(timeout_s / 0.05)):
            if len(self.posts) >= count:
                return
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def receiver(
    status: int = 204, port: int | None = None
) -> AsyncIterator[tuple[TestServer, Seen]]:
    """A webhook receiver on 127.0.0.1 (on `port`, if given) that answers every POST with
    `status`."""
    seen = Seen()

    async def receive(request: web.Request) -> web.Response:
        seen.posts.append((request.path, dict(request.headers), await request.read()))
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/{name}", receive)
    async with TestServer(app, host="127.0.0.1", port=port) as server:
        yield server, seen


async def docker_cli(*args: str) -> str:
    """A docker CLI command's output; it must succeed."""
    proc = await asyncio.create_subprocess_exec(
        "docker", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode().strip()
