"""B1: a busybox `true` container job, HTTP submit to stored result, against the docker SDK."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import docker

from bench.harness import Master, Row, follow_to_end, main_job, percentile, post_json

IMAGE = "asphalt-test:busybox"


def direct_run(client: docker.DockerClient) -> None:
    """What a worker must do at least: create, start, wait, collect the logs, remove."""
    container = client.containers.create(
        IMAGE, ["sh", "-c", "true"], network_mode="none", labels={"asphalt-bench": "b1"}
    )
    try:
        container.start()
        container.wait()
        container.logs()
    finally:
        container.remove(force=True)


async def asphalt_run(session: aiohttp.ClientSession, base: str) -> None:
    task = await post_json(
        session, f"{base}/projects/b1", {"action": "true", "container": IMAGE, "timeout": 60}
    )
    job = main_job(task)
    await follow_to_end(session, base, job)
    async with session.get(f"{base}/jobs/{job}") as r:
        state = (await r.json())["state"]
    if state != "succeeded":
        raise RuntimeError(f"B1 job {job} ended {state}")


async def run(workdir: Path, quick: bool) -> tuple[list[Row], dict[str, Any]]:
    runs = 6 if quick else 30
    client = docker.from_env()
    master = Master(workdir, ["-docker-network", "none", "-slots", "2"])
    await master.start()
    asphalt: list[float] = []
    direct: list[float] = []
    try:
        async with aiohttp.ClientSession() as session:
            await post_json(session, f"{master.url}/", {"name": "b1"})
            for i in range(runs + 2):  # two warm-up rounds each; the two alternate
                t0 = time.perf_counter()
                await asyncio.to_thread(direct_run, client)
                t1 = time.perf_counter()
                await asphalt_run(session, master.url)
                t2 = time.perf_counter()
                if i >= 2:
                    direct.append(t1 - t0)
                    asphalt.append(t2 - t1)
    finally:
        master.stop()
        client.close()
    med = percentile(asphalt, 50) / percentile(direct, 50)
    p99 = percentile(asphalt, 99) / percentile(direct, 99)
    rows = [
        Row(
            "B1",
            "container job median",
            percentile(asphalt, 50) * 1e3,
            "ms",
            percentile(direct, 50) * 1e3,
            med,
            "<= 1.15x docker SDK",
            med <= 1.15,
        ),
        Row(
            "B1",
            "container job p99",
            percentile(asphalt, 99) * 1e3,
            "ms",
            percentile(direct, 99) * 1e3,
            p99,
            "<= 1.5x docker SDK",
            p99 <= 1.5,
        ),
    ]
    return rows, {"runs": runs, "asphalt_s": asphalt, "direct_s": direct}
