"""B5: 1,000 simulated long-polling workers on one master, then jobs dispatched through them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import b2
from bench.harness import Master, Row, percentile, post_json, rss_bytes

POLL_HOLD_S = 25.0


async def measure(master: Master, workers: int, jobs: int) -> dict[str, Any]:
    base = master.url
    pid = master.proc.pid if master.proc else 0
    got: asyncio.Queue[float] = asyncio.Queue()
    answers = {"leases": 0, "early_204": 0, "late_204": 0}
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=POLL_HOLD_S + 30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        idle = await b2.measure(base, master.join, 100)  # B2 on this master while it is idle
        await asyncio.sleep(0.5)
        rss_before = rss_bytes(pid)
        ids = [await b2.register(session, base, master.join) for _ in range(workers)]

        async def worker(me: b2.Sim) -> None:
            while True:
                asked = time.perf_counter()
                lease = await b2.lease(session, base, me)
                if lease is None:
                    early = time.perf_counter() - asked < POLL_HOLD_S - 1
                    answers["early_204" if early else "late_204"] += 1
                    continue
                answers["leases"] += 1
                got.put_nowait(time.perf_counter())
                await b2.finish(session, base, me, lease)

        running = [asyncio.create_task(worker(me)) for me in ids]
        await asyncio.sleep(3.0)  # every long-poll is parked by now
        rss_idle = rss_bytes(pid)
        latencies: list[float] = []
        try:
            for _ in range(jobs):
                t0 = time.perf_counter()
                await post_json(session, f"{base}/projects/b2", {"action": "true"})
                arrived = await asyncio.wait_for(got.get(), 10.0)
                latencies.append(arrived - t0)
                while not got.empty():  # a job nobody submitted would be a bug; count it
                    got.get_nowait()
                    answers["extra"] = answers.get("extra", 0) + 1
            rss_after = rss_bytes(pid)
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
    return {
        "idle_dispatch_s": idle["dispatch_s"],
        "dispatch_s": latencies,
        "rss_before": rss_before,
        "rss_idle": rss_idle,
        "rss_after": rss_after,
        "answers": answers,
    }


async def run(workdir: Path, quick: bool) -> tuple[list[Row], dict[str, Any]]:
    workers, jobs = (1000, 1000) if quick else (1000, 10_000)
    master = Master(workdir, ["-no-worker", "-poll-hold", str(POLL_HOLD_S)])
    await master.start()
    try:
        raw = await measure(master, workers, jobs)
    finally:
        master.stop()
    per_worker = (raw["rss_idle"] - raw["rss_before"]) / workers / 1024
    idle99 = percentile(raw["idle_dispatch_s"], 99) * 1e3
    busy99 = percentile(raw["dispatch_s"], 99) * 1e3
    answers = raw["answers"]
    one_each = answers["leases"] == jobs and answers["early_204"] == 0 and "extra" not in answers
    rows = [
        Row(
            "B5",
            f"memory per idle worker ({workers})",
            per_worker,
            "KiB",
            target="<= 64 KiB",
            holds=per_worker <= 64,
        ),
        Row(
            "B5",
            f"dispatch p99, {workers} workers, {jobs} jobs",
            busy99,
            "ms",
            idle99,
            busy99 / idle99,
            "<= 2x B2 p99 (idle, same master)",
            busy99 <= 2 * idle99,
        ),
        Row(
            "B5",
            "dispatch p50",
            percentile(raw["dispatch_s"], 50) * 1e3,
            "ms",
            percentile(raw["idle_dispatch_s"], 50) * 1e3,
        ),
        Row(
            "B5",
            "workers answered per job",
            answers["leases"] / jobs,
            "",
            target="1 (no early 204s)",
            holds=one_each,
            note=f"early 204s: {answers['early_204']}",
        ),
    ]
    return rows, {"workers": workers, "jobs": jobs, **raw}
