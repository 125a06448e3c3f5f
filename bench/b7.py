"""B7: one host job printing a lot: master (+ embedded worker) memory growth and ingest rate."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import Master, Row, follow_to_end, main_job, post_json, rss_bytes

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
    master = Master(workdir, ["-slots", "1"])
    await master.start()
    peak = 0
    try:
        async with aiohttp.ClientSession() as session:
            await post_json(session, f"{master.url}/", {"name": "b7"})
            warm = await post_json(session, f"{master.url}/projects/b7", {"action": "echo hi"})
            await follow_to_end(session, master.url, main_job(warm))
            await asyncio.sleep(0.5)
            before = rss_bytes(master.proc.pid if master.proc else 0)
            peak = before

            async def sample() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, rss_bytes(master.proc.pid if master.proc else 0))
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
    finally:
        master.stop()
    growth_mib = (peak - before) / (1 << 20)
    rate = size / elapsed / 1e6
    floor_rate = size / floor_s / 1e6
    mb = size // 1_000_000
    rows = [
        Row(
            "B7",
            f"{mb} MB output: master+worker RSS growth",
            growth_mib,
            "MiB",
            target="<= 64 MiB",
            holds=growth_mib <= 64,
            note="one process: master with its embedded worker",
        ),
        Row(
            "B7",
            f"{mb} MB output: ingest",
            rate,
            "MB/s",
            floor_rate,
            rate / floor_rate,
            ">= 50 MB/s (baseline: pipe read)",
            rate >= 50,
        ),
    ]
    raw = {
        "bytes": size,
        "elapsed_s": elapsed,
        "rss_before": before,
        "rss_peak": peak,
        "floor_s": floor_s,
    }
    return rows, raw
