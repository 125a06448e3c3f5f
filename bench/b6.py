"""B6: cold start of a master whose store holds many finished jobs, until it serves GET /."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.b2 import finish, lease, register
from bench.harness import Master, Row, post_json

# One create makes four jobs: main, success and after run; failure ends skipped.
TASK = {
    "jobs": {
        "main": {"action": "true"},
        "success": {"action": "true"},
        "failure": {"action": "true"},
        "after": {"action": "true"},
    }
}
JOBS_PER_TASK = 4
RUN_PER_TASK = 3
WORKERS = 4
SUBMITTERS = 4
BACKLOG = 400  # jobs created but not yet finished


async def fill(base: str, join: str, want_jobs: int, limit_s: float) -> int:
    """Create tasks and finish their jobs with simulated workers; returns the jobs that ended."""
    tasks_made = 0
    finished = 0
    stop_at = time.perf_counter() + limit_s
    connector = aiohttp.TCPConnector(limit=WORKERS + SUBMITTERS + 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        await post_json(session, f"{base}/", {"name": "b6"})

        async def submitter() -> None:
            nonlocal tasks_made
            while tasks_made * JOBS_PER_TASK < want_jobs and time.perf_counter() < stop_at:
                if tasks_made * RUN_PER_TASK - finished > BACKLOG:
                    await asyncio.sleep(0.005)  # the workers catch up: the time limit holds
                    continue
                tasks_made += 1
                await post_json(session, f"{base}/projects/b6", TASK)

        async def worker() -> None:
            nonlocal finished
            me = await register(session, base, join)
            while True:
                got = await lease(session, base, me)
                if got is not None:
                    await finish(session, base, me, got)
                    finished += 1

        workers = [asyncio.create_task(worker()) for _ in range(WORKERS)]
        await asyncio.gather(*(submitter() for _ in range(SUBMITTERS)))
        while finished < tasks_made * RUN_PER_TASK:
            await asyncio.sleep(0.05)
            for w in workers:
                if w.done():
                    w.result()  # raises what went wrong
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    return tasks_made * JOBS_PER_TASK


async def run(workdir: Path, quick: bool) -> tuple[list[Row], dict[str, Any]]:
    want, limit_s = (4000, 20.0) if quick else (100_000, 240.0)
    empty = Master(workdir, ["-no-worker"])
    empty_s = await empty.start()
    empty.stop()
    master = Master(workdir, ["-no-worker", "-poll-hold", "1"])
    await master.start()
    t0 = time.perf_counter()
    try:
        jobs = await fill(master.url, master.join, want, limit_s)
    finally:
        master.stop()
    fill_s = time.perf_counter() - t0
    store = master.data
    assert store is not None
    size = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
    restarted = Master(workdir, ["-no-worker"], data=store)
    cold_s = await restarted.start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{restarted.url}/projects/b6?limit=1") as r,
        ):
            if r.status != 200:
                raise RuntimeError(f"B6: the restarted master answered {r.status}")
    finally:
        restarted.stop()
    rows = [
        Row(
            "B6",
            f"cold start, {jobs} finished jobs",
            cold_s * 1e3,
            "ms",
            empty_s * 1e3,
            cold_s / empty_s,
            "<= 3 s (baseline: empty store)",
            cold_s <= 3.0,
            "" if jobs >= 100_000 else f"{jobs} jobs, not 100,000",
        )
    ]
    raw = {
        "jobs": jobs,
        "fill_s": fill_s,
        "store_bytes": size,
        "cold_start_s": cold_s,
        "empty_start_s": empty_s,
    }
    return rows, raw
