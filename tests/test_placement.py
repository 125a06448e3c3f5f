"""Where a template's jobs may run: max_running caps them across every worker, env_from_host
sends them only to workers that let those variables through, and a job no live worker can run
waits with a reason and fails after -unrunnable-after."""

from __future__ import annotations

import asyncio
from typing import Any

from harness import REG, Master, MasterFactory

from asphalt.protocol import Finish
from asphalt.wire import replace
from asphalt.worker.client import MasterClient

TEMPLATE: dict[str, Any] = {"name": "train", "runtime": "host", "command": "/bin/true"}


async def _project(m: Master, template: dict[str, Any]) -> None:
    assert (await m.call("POST", "/", {"name": "p"}))[0] == 201
    status, made = await m.call("POST", "/templates", template)
    assert status == 201, made


async def _reason(m: Master, task: str) -> str:
    job = (await m.task("p", task))["jobs"]["main"]
    return str(job.get("reason"))


def _fin(attempt: int) -> Finish:
    return Finish(
        attempt=attempt, state="succeeded", status=0, reason=None, started_at=1.0, ended_at=2.0
    )


async def test_max_running_holds_across_two_workers(master: MasterFactory) -> None:
    m = await master(poll_hold_s=5.0, lease_s=30.0)
    await _project(m, {**TEMPLATE, "max_running": 1})
    for task in ("a", "b", "c"):
        assert (await m.call("POST", "/projects/p", {"id": task, "template": "train"}))[0] == 201
    async with MasterClient(m.url, join=m.join) as one, MasterClient(m.url, join=m.join) as two:
        first = (await one.register(replace(REG, name="one"))).worker
        second = (await two.register(replace(REG, name="two"))).worker
        lease = await one.lease(first)
        assert lease is not None
        waiting = asyncio.ensure_future(two.lease(second))  # a long-poll that must not get one
        await asyncio.sleep(0.5)
        assert not waiting.done()
        reasons = {await _reason(m, t) for t in ("a", "b", "c")} - {"None"}
        assert reasons == {"template train: 1 of 1 running"}, reasons
        # The first one's end makes room, and the worker that waited gets the next at once.
        await one.finish(first, lease.job, _fin(lease.attempt))
        handed = await asyncio.wait_for(waiting, 2.0)
        assert handed is not None and handed.spec.template == "train"
        _, workers = await m.call("GET", "/workers")
        running = [w["running"] for w in workers["workers"]]
        assert sorted(len(r) for r in running) == [0, 1], workers
        await two.finish(second, handed.job, _fin(handed.attempt))
        last = await asyncio.wait_for(one.lease(first), 6.0)
        assert last is not None


async def test_the_room_an_end_makes_goes_to_one_waiting_worker_only(
    master: MasterFactory,
) -> None:
    m = await master(poll_hold_s=5.0, lease_s=30.0)
    await _project(m, {**TEMPLATE, "max_running": 1})
    for task in ("a", "b", "c"):
        assert (await m.call("POST", "/projects/p", {"id": task, "template": "train"}))[0] == 201
    clients = [MasterClient(m.url, join=m.join) for _ in range(3)]
    for client in clients:
        await client.__aenter__()
    try:
        ids = [(await c.register(replace(REG, name=f"w{i}"))).worker for i, c in enumerate(clients)]
        lease = await clients[0].lease(ids[0])
        assert lease is not None
        waiting = [
            asyncio.ensure_future(c.lease(w)) for c, w in zip(clients[1:], ids[1:], strict=True)
        ]
        await asyncio.sleep(0.3)
        await clients[0].finish(ids[0], lease.job, _fin(lease.attempt))
        await asyncio.sleep(0.5)
        assert sum(1 for w in waiting if w.done() and w.result() is not None) == 1
        _, workers = await m.call("GET", "/workers")
        assert sum(len(w["running"]) for w in workers["workers"]) == 1, workers
        for w in waiting:
            w.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
    finally:
        for client in clients:
            await client.__aexit__(None, None, None)


async def test_env_from_host_goes_only_to_workers_that_allow_it(master: MasterFactory) -> None:
    m = await master(poll_hold_s=0.3, lease_s=30.0)
    await _project(m, {**TEMPLATE, "env_from_host": ["AWS_REGION"]})
    assert (await m.call("POST", "/projects/p", {"id": "a", "template": "train"}))[0] == 201
    async with MasterClient(m.url, join=m.join) as plain, MasterClient(m.url, join=m.join) as aws:
        closed = (await plain.register(replace(REG, name="closed"))).worker
        assert await plain.lease(closed) is None
        reason = await _reason(m, "a")
        assert "AWS_REGION" in reason and "-env-allow" in reason, reason
        opened = (await aws.register(replace(REG, name="open", env_allow=("AWS_*",)))).worker
        lease = await aws.lease(opened)
        assert lease is not None and lease.spec.env_from_host == ("AWS_REGION",)
        job = (await m.task("p", "a"))["jobs"]["main"]
        assert job["env_from_host"] == ["AWS_REGION"] and job["env"] == {}
    _, workers = await m.call("GET", "/workers")
    assert {w["name"]: w["envAllow"] for w in workers["workers"]} == {
        "closed": [],
        "open": ["AWS_*"],
    }


async def test_a_job_no_live_worker_can_run_fails_after_unrunnable_after(
    master: MasterFactory,
) -> None:
    m = await master(poll_hold_s=0.3, lease_s=30.0, unrunnable_after_s=1.0)
    await _project(m, {**TEMPLATE, "env_from_host": ["AWS_REGION"]})
    for task, body in {
        "env": {"template": "train"},
        "sing": {"action": "x", "runtime": "singularity", "container": "docker://alpine"},
        "fine": {"action": "x"},
    }.items():
        assert (await m.call("POST", "/projects/p", {"id": task, **body}))[0] == 201
    # With no worker at all they wait: a worker may come.
    await asyncio.sleep(2.5)
    assert {(await m.task("p", t))["jobs"]["main"]["state"] for t in ("env", "sing")} == {"queued"}
    async with MasterClient(m.url, join=m.join) as client:
        worker = (await client.register(REG)).worker  # host only, allows nothing
        sing = await _reason(m, "sing")
        assert "singularity runtime" in sing, sing

        async def failed() -> bool:
            await client.heartbeat(worker, [], 0.1)  # live all along
            jobs = [(await m.task("p", t))["jobs"]["main"] for t in ("env", "sing")]
            return all(j["state"] == "failed" for j in jobs)

        for _ in range(40):
            if await failed():
                break
            await asyncio.sleep(0.2)
        for task, words in (("env", "AWS_REGION"), ("sing", "singularity runtime")):
            job = (await m.task("p", task))["jobs"]["main"]
            assert job["state"] == "failed" and job["attempt"] == 0, job
            assert "1 s" in job["reason"] and words in job["reason"], job["reason"]
        task = await m.task("p", "env")
        assert (task["status"], task["outcome"]) == ("complete", "failed")
        lease = await client.lease(worker)  # the one it can run was never failed
        assert lease is not None and lease.spec.action == "x"
