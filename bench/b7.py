"""B7: one host job printing a lot: master and worker memory growth, and the ingest rate."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import (
    Master,
    Proc,
    Row,
    follow_to_end,
    main_job,
    post_json,
    rss_bytes,
    start_worker,
)

LINE = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def action(size: int) -> str:
    return f"yes {LINE} | head -c {size}"


async def floor(size: int) -> float:
    """Seconds the same pipeline takes into a pipe read by this process: the physical floor."""
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_shell(action(size), stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    while await proc.stdout.read(1 << 16):
        pass
    await proc.wait()
    return time.perf_counter() - started


async def run(workdir: Path, quick: bool) -> tuple[list[Row], dict[str, Any]]:
    size = (100 if quick else 1000) * 1_000_000
    floor_s = await floor(size)
    master = Master(workdir, ["-no-worker"])
    await master.start()
    try:
        worker = await start_worker(workdir, master, ["-slots", "1"])
        try:
            measured = await _one_big_job(master, worker, size)
        finally:
            worker.stop()
    finally:
        master.stop()
    elapsed, growth = measured["elapsed_s"], measured["growth"]
    rate = size / elapsed / 1e6
    floor_rate = size / floor_s / 1e6
    mb = size // 1_000_000
    rows = [
        Row(
            "B7",
            f"{mb} MB output: {who} RSS growth",
            growth[who] / (1 << 20),
            "MiB",
            target="<= 64 MiB",
            holds=growth[who] <= 64 << 20,
        )
        for who in ("master", "worker")
    ]
    rows.append(
        Row(
            "B7",
            f"{mb} MB output: ingest",
            rate,
            "MB/s",
            floor_rate,
            rate / floor_rate,
            ">= 50 MB/s (baseline: pipe read)",
            rate >= 50,
        )
    )
    return rows, {"bytes": size, "floor_s": floor_s} | measured


async def _one_big_job(master: Master, worker: Proc, size: int) -> dict[str, Any]:
    """Run the job, sampling both processes' RSS; the growth is over an idle, warmed-up state."""
    pids = {"master": master.proc.pid if master.proc else 0, "worker": worker.pid}
    async with aiohttp.ClientSession() as session:
        await post_json(session, f"{master.url}/", {"name": "b7"})
        warm = await post_json(session, f"{master.url}/projects/b7", {"action": "echo hi"})
        await follow_to_end(session, master.url, main_job(warm))
        await asyncio.sleep(0.5)
        before = {who: rss_bytes(pid) for who, pid in pids.items()}
        peak = dict(before)

        async def sample() -> None:
            while True:
                for who, pid in pids.items():
                    peak[who] = max(peak[who], rss_bytes(pid))
                await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample())
        t0 = time.perf_counter()
        task = await post_json(
            session, f"{master.url}/projects/b7", {"action": action(size), "timeout": 600}
        )
        job = main_job(task)
        await follow_to_end(session, master.url, job)
        elapsed = time.perf_counter() - t0
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        async with session.get(f"{master.url}/jobs/{job}") as r:
            view = await r.json()
        if view["state"] != "succeeded":
            raise RuntimeError(f"B7 job ended {view['state']}")
    growth = {who: peak[who] - before[who] for who in pids}
    return {"elapsed_s": elapsed, "rss_before": before, "rss_peak": peak, "growth": growth}
