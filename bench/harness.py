"""Processes, HTTP helpers and statistics shared by the benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def rss_bytes(pid: int) -> int:
    """The resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class Row:
    """One figure of the table: a value, its baseline from the same run and the target."""

    bench: str
    metric: str
    value: float | None
    unit: str
    baseline: float | None = None
    ratio: float | None = None
    target: str = ""
    holds: bool | None = None
    note: str = ""


@dataclass
class Proc:
    """A subprocess this run started; stopped by its own pid only."""

    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.started_at = time.perf_counter()
        self.popen = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


async def wait_http(url: str, proc: Proc, limit_s: float = 30.0) -> float:
    """Poll GET url until it answers 200; returns seconds since the process was started."""
    deadline = time.perf_counter() + limit_s
    async with aiohttp.ClientSession() as session:
        while time.perf_counter() < deadline:
            assert proc.popen is not None
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited early; see {proc.log_path}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(url) as r:
                    if r.status == 200:
                        await r.read()
                        return time.perf_counter() - proc.started_at
            await asyncio.sleep(0.005)
    raise RuntimeError(f"{proc.name} did not serve {url} within {limit_s} s")


@dataclass
class Master:
    """An Asphalt master started as `python -m asphalt` on loopback."""

    workdir: Path
    flags: list[str] = field(default_factory=list)
    data: Path | None = None
    port: int = 0
    proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def join(self) -> str:
        """The join token the master keeps in its data directory."""
        assert self.data is not None
        return (self.data / "join.token").read_text().strip()

    def argv(self) -> list[str]:
        assert self.data is not None
        return [
            sys.executable,
            "-m",
            "asphalt",
            "-host",
            HOST,
            "-port",
            str(self.port),
            "-data",
            str(self.data),
            "-log",
            "json",
            *self.flags,
        ]

    async def start(self) -> float:
        """Start it and wait until it serves GET /; returns the seconds that took."""
        self.port = self.port or free_port()
        if self.data is None:
            self.data = self.workdir / f"data-{self.port}"
        log = self.workdir / f"master-{self.port}.log"
        self.proc = Proc(f"master:{self.port}", self.argv(), log)
        self.proc.start()
        return await wait_http(self.url + "/", self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


async def start_worker(workdir: Path, master: Master, flags: list[str]) -> Proc:
    """A separate worker process for `master`, started and registered."""
    name = f"worker-{master.port}"
    argv = [
        sys.executable,
        "-m",
        "asphalt",
        "-master",
        f"{HOST}:{master.port}",
        "-join",
        master.join,
    ]
    argv += ["-state", str(workdir / f"{name}-state"), "-log", "json", *flags]
    proc = Proc(name, argv, workdir / f"{name}.log")
    proc.start()
    deadline = time.perf_counter() + 30
    async with aiohttp.ClientSession() as session:
        while time.perf_counter() < deadline:
            assert proc.popen is not None
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{name} exited early; see {proc.log_path}")
            async with session.get(f"{master.url}/workers") as r:
                if any(w.get("state") == "live" for w in (await r.json())["workers"]):
                    return proc
            await asyncio.sleep(0.05)
    proc.stop()
    raise RuntimeError(f"{name} did not register within 30 s")


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    body: Any,
    expect: int = 201,
    headers: dict[str, str] | None = None,
) -> Any:
    async with session.post(url, json=body, headers=headers) as r:
        data = await r.json(content_type=None) if r.status != 204 else None
        if r.status != expect:
            raise RuntimeError(f"POST {url} answered {r.status}: {data}")
        return data


async def follow_to_end(session: aiohttp.ClientSession, base: str, job: str) -> None:
    """Block until the job's attempt ends (the output stream closes when it does)."""
    async with session.get(f"{base}/jobs/{job}/output", params={"follow": "1"}) as r:
        async for _ in r.content.iter_chunked(1 << 16):
            pass
    async with session.get(f"{base}/jobs/{job}") as r:
        state = (await r.json())["state"]
        if state == "queued":  # queued again, e.g. after a release: wait for the next attempt
            await follow_to_end(session, base, job)


def main_job(task: dict[str, Any]) -> str:
    job: str = task["jobs"]["main"]["id"]
    return job


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": sys.platform,
        "kernel": os.uname().release,
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_kib"] = int(line.split()[1])
                break
    return info


def git_commit(root: Path) -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
