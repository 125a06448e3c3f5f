"""B4: create-task and get-task requests/s at 64 concurrent clients, against a bare aiohttp app."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import HOST, Master, Proc, Row, free_port, post_json, wait_http

CLIENTS = 64
JOB = {"action": "true"}


async def load(
    session: aiohttp.ClientSession, call: Callable[[], Awaitable[int]], seconds: float
) -> tuple[float, int]:
    """CLIENTS loops calling `call` for `seconds`; returns (requests/s, errors)."""
    done = 0
    errors = 0
    stop_at = 0.0

    async def client() -> None:
        nonlocal done, errors
        while time.perf_counter() < stop_at:
            status = await call()
            if status >= 300:
                errors += 1
            done += 1

    stop_at = time.perf_counter() + 0.3  # warm the connections up
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    done = 0
    started = time.perf_counter()
    stop_at = started + seconds
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return done / (time.perf_counter() - started), errors


async def measure(base: str, task: str, seconds: float) -> dict[str, float]:
    connector = aiohttp.TCPConnector(limit=CLIENTS)
    async with aiohttp.ClientSession(connector=connector) as session:
        body = json.dumps(JOB).encode()

        async def create() -> int:
            async with session.post(f"{base}/projects/b4", data=body) as r:
                await r.read()
                return r.status

        async def get() -> int:
            async with session.get(f"{base}/projects/b4/tasks/{task}") as r:
                await r.read()
                return r.status

        creates, create_errors = await load(session, create, seconds)
        gets, get_errors = await load(session, get, seconds)
    return {
        "create_rps": creates,
        "get_rps": gets,
        "create_errors": create_errors,
        "get_errors": get_errors,
    }


async def run(workdir: Path, quick: bool) -> tuple[list[Row], dict[str, Any]]:
    seconds = 2.0 if quick else 6.0
    master = Master(workdir, ["-no-worker"])
    await master.start()
    try:
        async with aiohttp.ClientSession() as session:
            await post_json(session, f"{master.url}/", {"name": "b4"})
            task = await post_json(session, f"{master.url}/projects/b4", JOB)
        asphalt = await measure(master.url, task["id"], seconds)
    finally:
        master.stop()
    canned = workdir / "b4-task.json"
    canned.write_text(json.dumps(task, ensure_ascii=False, separators=(",", ":")))
    port = free_port()
    argv = [sys.executable, "-m", "bench.bare", "--port", str(port), "--body", str(canned)]
    bare = Proc("bare", argv, workdir / "bare.log")
    bare.start()
    try:
        await wait_http(f"http://{HOST}:{port}/", bare)
        baseline = await measure(f"http://{HOST}:{port}", task["id"], seconds)
    finally:
        bare.stop()
    reads = asphalt["get_rps"] / baseline["get_rps"]
    creates = asphalt["create_rps"] / baseline["create_rps"]
    rows = [
        Row(
            "B4",
            "get-task req/s",
            asphalt["get_rps"],
            "req/s",
            baseline["get_rps"],
            reads,
            ">= 0.6x bare",
            reads >= 0.6,
        ),
        Row(
            "B4",
            "create-task req/s (durable)",
            asphalt["create_rps"],
            "req/s",
            baseline["create_rps"],
            creates,
            ">= 0.3x bare",
            creates >= 0.3,
        ),
    ]
    return rows, {"seconds": seconds, "clients": CLIENTS, "asphalt": asphalt, "bare": baseline}
