"""B2: a job submitted over HTTP until an idle long-polling worker holds its lease."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import Master, Row, percentile, post_json

REGISTRATION = {
    "name": "bench",
    "host": "bench",
    "types": [],
    "runtimes": ["host"],
    "slots": 1,
    "version": "bench",
    "protocol": 4,  # asphalt/protocol.py PROTOCOL (the bench talks to Asphalt only over HTTP)
}


@dataclass(frozen=True)
class Sim:
    """A simulated worker: its id, and the header that carries its credential."""

    id: str
    headers: dict[str, str]


async def register(session: aiohttp.ClientSession, base: str, join: str, slots: int = 1) -> Sim:
    body = dict(REGISTRATION, slots=slots)
    headers = {"Authorization": f"Bearer {join}"}
    welcome = await post_json(session, f"{base}/_worker/register", body, headers=headers)
    return Sim(welcome["worker"], {"Authorization": f"Bearer {welcome['secret']}"})


async def lease(session: aiohttp.ClientSession, base: str, worker: Sim) -> dict[str, Any] | None:
    """One long-poll; None on a 204 (nothing to do within the hold)."""
    path = f"{base}/_worker/{worker.id}/lease"
    async with session.post(path, json={}, headers=worker.headers) as r:
        if r.status == 204:
            return None
        if r.status != 200:
            raise RuntimeError(f"lease answered {r.status}: {await r.text()}")
        found: dict[str, Any] = await r.json()
        return found


async def finish(
    session: aiohttp.ClientSession, base: str, worker: Sim, got: dict[str, Any]
) -> None:
    now = time.time()
    body = {
        "attempt": got["attempt"],
        "state": "succeeded",
        "status": 0,
        "reason": None,
        "started_at": now,
        "ended_at": now,
    }
    path = f"{base}/_worker/{worker.id}/jobs/{got['job']}/finish"
    await post_json(session, path, body, 200, headers=worker.headers)


async def measure(base: str, join: str, samples: int, warmup: int = 5) -> dict[str, list[float]]:
    """Dispatch latency with one simulated idle worker; also the create call's own time."""
    dispatch: list[float] = []
    create: list[float] = []
    async with aiohttp.ClientSession() as session:
        await post_json(session, f"{base}/", {"name": "b2"})
        worker = await register(session, base, join)
        for i in range(warmup + samples):
            polling = asyncio.create_task(lease(session, base, worker))
            await asyncio.sleep(0.03)  # the lease call is parked on the master by now
            t0 = time.perf_counter()
            await post_json(session, f"{base}/projects/b2", {"action": "true"})
            t1 = time.perf_counter()
            got = await polling
            t2 = time.perf_counter()
            if got is None:
                raise RuntimeError("the idle worker's lease came back empty")
            if i >= warmup:
                create.append(t1 - t0)
                dispatch.append(t2 - t0)
            await finish(session, base, worker, got)
    return {"dispatch_s": dispatch, "create_s": create}


async def run(workdir: Path, quick: bool) -> tuple[list[Row], dict[str, Any]]:
    master = Master(workdir, ["-no-worker"])
    await master.start()
    try:
        figures = await measure(master.url, master.join, 40 if quick else 300)
    finally:
        master.stop()
    d = figures["dispatch_s"]
    c = figures["create_s"]
    p50, p99 = percentile(d, 50) * 1e3, percentile(d, 99) * 1e3
    rows = [
        Row("B2", "dispatch p50", p50, "ms", target="<= 5 ms", holds=p50 <= 5),
        Row("B2", "dispatch p99", p99, "ms", target="<= 25 ms", holds=p99 <= 25),
        Row("B2", "create call p50 (part of it)", percentile(c, 50) * 1e3, "ms"),
    ]
    return rows, {"samples": len(d), **figures}
