"""B3: throughput of `true` host jobs on one worker with 2 slots, against a plain asyncio loop."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import compare
from bench.harness import Master, Row, follow_to_end, main_job, post_json, start_worker

SLOTS = 2
SUBMITTERS = 8


async def plain_loop(jobs: int) -> float:
    """Seconds to run `sh -c true` `jobs` times, SLOTS at a time, each in its own session."""
    gate = asyncio.Semaphore(SLOTS)

    async def one() -> None:
        async with gate:
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                "true",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
            await proc.communicate()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(jobs)))
    return time.perf_counter() - started


async def asphalt_jobs(base: str, jobs: int) -> float:
    """Seconds from the first submission until every job has ended."""
    ids: list[str] = []
    async with aiohttp.ClientSession() as session:
        await post_json(session, f"{base}/", {"name": "b3"})
        queue = iter(range(jobs))
        started = time.perf_counter()

        async def submitter() -> None:
            for _ in queue:
                task = await post_json(session, f"{base}/projects/b3", {"action": "true"})
                ids.append(main_job(task))

        await asyncio.gather(*(submitter() for _ in range(SUBMITTERS)))
        for job in ids:  # oldest first, as they are served
            await follow_to_end(session, base, job)
        elapsed = time.perf_counter() - started
        failed = 0
        for job in ids[-20:]:
            async with session.get(f"{base}/jobs/{job}") as r:
                failed += (await r.json())["state"] != "succeeded"
        if failed:
            raise RuntimeError(f"B3: {failed} of the last 20 jobs did not succeed")
    return elapsed


async def run(workdir: Path, quick: bool) -> tuple[list[Row], dict[str, Any]]:
    jobs = 200 if quick else 2000
    await plain_loop(20)  # warm-up
    plain = await plain_loop(jobs)
    # The quick start's setup: the master's own worker, in the master's process.
    master = Master(workdir, ["-slots", str(SLOTS)])
    await master.start()
    try:
        embedded = await asphalt_jobs(master.url, jobs)
    finally:
        master.stop()
    # As on a cluster (and as Celery and RQ run): the worker is a process of its own.
    master = Master(workdir, ["-no-worker"])
    await master.start()
    try:
        worker = await start_worker(workdir, master, ["-slots", str(SLOTS)])
        try:
            asphalt = await asphalt_jobs(master.url, jobs)
        finally:
            worker.stop()
    finally:
        master.stop()
    rows = [
        Row(
            "B3",
            f"{jobs} host jobs, 2 slots, {where}",
            jobs / seconds,
            "jobs/s",
            jobs / plain,
            plain / seconds,
            ">= 0.6x plain loop",
            plain / seconds >= 0.6,
        )
        for where, seconds in (("worker process", asphalt), ("embedded worker", embedded))
    ]
    others: dict[str, Any] = {"skipped": "not run in --quick"}
    if not quick:
        try:
            others = await compare.run(workdir, jobs)
        except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as e:
            others = {"skipped": f"{type(e).__name__}: {e}"}
    for kind, need in (("rq", 2.0), ("celery", 1.0)):
        name = "RQ" if kind == "rq" else "Celery"
        seconds = others.get(f"{kind}_s")
        if seconds is None:
            why = str(others.get("skipped", "failed"))[:60]
            rows.append(Row("B3", f"vs {name}", None, "", target=f">= {need:g}x {name}", note=why))
            continue
        theirs = others[f"{kind}_jobs"] / seconds
        ratio = (jobs / asphalt) / theirs
        rows.append(
            Row(
                "B3",
                f"vs {name} ({others[f'{kind}_jobs']} jobs; Asphalt's worker process)",
                jobs / asphalt,
                "jobs/s",
                theirs,
                ratio,
                f">= {need:g}x {name}",
                ratio >= need,
            )
        )
    raw = {"jobs": jobs, "asphalt_s": asphalt, "embedded_s": embedded, "plain_s": plain}
    return rows, raw | {"compare": others}
