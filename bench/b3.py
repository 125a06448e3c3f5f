"""B3: throughput of `true` host jobs on one worker with 2 slots, against a plain asyncio loop."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import compare
from bench.harness import Master, Row, follow_to_end, main_job, post_json

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
    master = Master(workdir, ["-slots", str(SLOTS)])
    await master.start()
    try:
        asphalt = await asphalt_jobs(master.url, jobs)
    finally:
        master.stop()
    ratio = plain / asphalt
    rows = [
        Row(
            "B3",
            f"{jobs} host jobs, 2 slots",
            jobs / asphalt,
            "jobs/s",
            jobs / plain,
            ratio,
            ">= 0.6x plain loop",
            ratio >= 0.6,
        ),
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
                f"vs {name} (2 worker processes, {others[f'{kind}_jobs']} jobs)",
                jobs / asphalt,
                "jobs/s",
                theirs,
                ratio,
                f">= {need:g}x {name}",
                ratio >= need,
            )
        )
    return rows, {"jobs": jobs, "asphalt_s": asphalt, "plain_s": plain, "compare": others}
