"""Retention: deleting a task or a project (what runs is cancelled first, then removed), and the
keep-days policy removing old completed tasks with their output, on a real master."""

from __future__ import annotations

import asyncio
from functools import partial

from harness import REG, Master, MasterFactory

from asphalt.master.http.common import SCHEDULER
from asphalt.master.http.retention_api import RETENTION
from asphalt.master.store import retention as table
from asphalt.protocol import Finish
from asphalt.wire import replace
from asphalt.worker.client import MasterClient

DONE = {"attempt": 1, "status": 0, "reason": None, "started_at": 1.0, "ended_at": 2.0}


async def _run_one(m: Master, client: MasterClient, worker: str, state: str = "succeeded") -> str:
    """Lease the next job, give it some output and end it; its id."""
    lease = await client.lease(worker)
    assert lease is not None
    await client.output(worker, lease.job, lease.attempt, 0, b"some output\n")
    await client.finish(worker, lease.job, Finish(state=state, **DONE))  # type: ignore[arg-type]
    return lease.job


async def test_deleting_a_task_removes_it_and_its_output_and_a_running_one_goes_once_stopped(
    master: MasterFactory,
) -> None:
    m = await master()
    await m.call("POST", "/", {"name": "p"})
    await m.call("POST", "/projects/p", {"id": "done", "action": "x"})
    async with MasterClient(m.url, join=m.join) as client:
        worker = (await client.register(REG)).worker
        job = await _run_one(m, client, worker)
        assert (await m.call("GET", f"/jobs/{job}/output"))[0] == 200
        status, token = await m.call("POST", "/tokens", {"name": "s", "scope": "submit"})
        submit = {"Authorization": f"Bearer {token['token']}"}
        assert (await m.call("DELETE", "/projects/p/tasks/done", headers=submit))[0] == 403
        assert await m.call("DELETE", "/projects/p/tasks/done") == (200, {"deleted": "done"})
        assert (await m.call("GET", "/projects/p/tasks/done"))[0] == 404
        assert (await m.call("GET", f"/jobs/{job}"))[0] == 404
        assert (await m.call("GET", f"/jobs/{job}/output"))[0] == 404

        await m.call("POST", "/projects/p", {"id": "busy", "action": "sleep 100"})
        lease = await client.lease(worker)
        assert lease is not None
        status, answer = await m.call("DELETE", "/projects/p/tasks/busy")
        assert status == 202 and "removed once its jobs have stopped" in answer["message"]
        assert (await m.call("GET", "/projects/p/tasks/busy"))[0] == 200  # still stopping
        beat = await client.heartbeat(worker, [(lease.job, lease.attempt)], 0.2)
        assert beat.cancel == [lease.job]
        await client.finish(worker, lease.job, Finish(state="cancelled", **DONE))
    assert (await m.call("GET", "/projects/p/tasks/busy"))[0] == 404


async def test_keep_days_removes_old_completed_tasks_and_a_project_may_keep_its_own(
    master: MasterFactory,
) -> None:
    m = await master(keep_days=7)
    for name in ("short", "forever"):
        await m.call("POST", "/", {"name": name})
        await m.call("POST", f"/projects/{name}", {"id": "old", "action": "x"})
    status, changed = await m.call("PATCH", "/projects/forever", {"keep_days": 0})
    assert status == 200 and changed["keepDays"] == 0, changed
    status, answer = await m.call("PATCH", "/projects/forever", {"keep_days": -1})
    assert status == 400 and answer["field"] == "keep_days", answer
    async with MasterClient(m.url, join=m.join) as client:
        worker = (await client.register(REG)).worker
        await _run_one(m, client, worker)
        await _run_one(m, client, worker)
    await m.call("POST", "/projects/short", {"id": "queued", "action": "x"})  # never ends
    retention = m.server.app[RETENTION]
    assert retention.sweep() == 0  # nothing is a week old yet
    real = retention.now
    retention.now = lambda: real() + 8 * 86400
    assert retention.sweep() == 1
    assert (await m.call("GET", "/projects/short/tasks/old"))[0] == 404
    assert (await m.call("GET", "/projects/short/tasks/queued"))[0] == 200  # not completed
    assert (await m.call("GET", "/projects/forever/tasks/old"))[0] == 200  # keep_days 0


async def test_deleting_a_project_removes_its_tasks_hooks_and_schedules_and_frees_its_name(
    master: MasterFactory,
) -> None:
    m = await master()
    await m.call("POST", "/", {"name": "gone"})
    await m.call("POST", "/projects/gone", {"id": "t1", "action": "x"})
    hook = {"url": "http://127.0.0.1:9/hook", "events": ["task.completed"]}
    assert (await m.call("POST", "/projects/gone/hooks", hook))[0] == 201
    schedule = {"name": "n", "cron": "@daily", "task": {"action": "x"}}
    assert (await m.call("POST", "/projects/gone/schedules", schedule))[0] == 201
    async with MasterClient(m.url, join=m.join) as client:
        worker = (await client.register(REG)).worker
        lease = await client.lease(worker)
        assert lease is not None
        status, answer = await m.call("DELETE", "/projects/gone")
        assert status == 202 and "1 of its tasks" in answer["message"], answer
        status, refused = await m.call("POST", "/projects/gone", {"action": "x"})
        assert status == 409 and "being deleted" in refused["error"], refused
        await client.finish(worker, lease.job, Finish(state="cancelled", **DONE))
    for _ in range(50):
        if (await m.call("GET", "/projects/gone"))[0] == 404:
            break
        await asyncio.sleep(0.05)
    assert (await m.call("GET", "/projects/gone"))[0] == 404
    assert [p["name"] for p in (await m.call("GET", "/"))[1]["projects"]] == []
    status, again = await m.call("POST", "/", {"name": "gone"})
    assert status == 201, again
    assert (await m.call("GET", "/projects/gone/hooks"))[1]["hooks"] == []
    assert (await m.call("GET", "/projects/gone/schedules"))[1]["schedules"] == []


async def test_deletions_a_stopped_master_left_half_done_are_finished_when_it_starts(
    master: MasterFactory,
) -> None:
    m = await master()
    await m.call("POST", "/", {"name": "p"})
    await m.call("POST", "/", {"name": "emptied"})
    await m.call("POST", "/projects/p", {"id": "left", "action": "x"})
    await m.call("POST", "/projects/p", {"id": "kept", "action": "x"})
    async with MasterClient(m.url, join=m.join) as client:
        worker = (await client.register(REG)).worker
        await _run_one(m, client, worker)
        await _run_one(m, client, worker)
    app = m.server.app
    scheduler, retention = app[SCHEDULER], app[RETENTION]
    store = scheduler.store
    # What a master killed between a marked task's end and its removal leaves: the task marked
    # for deletion with its run complete, and its project marked too, waiting for it.
    project = scheduler.tasks.project("p")
    task = scheduler.tasks.task(project, "left")
    store.change(partial(table.save_task, task=replace(task, deleting=True)))
    emptied = scheduler.tasks.project("emptied")
    store.change(partial(table.save_project, project=replace(emptied, deleting=True)))
    retention.finish()  # what the retention service does first when the master starts
    assert (await m.call("GET", "/projects/p/tasks/left"))[0] == 404
    assert (await m.call("GET", "/projects/p/tasks/kept"))[0] == 200
    assert (await m.call("GET", "/projects/emptied"))[0] == 404
    assert store.look(table.marked_tasks) == []


async def test_an_idempotency_key_whose_task_was_deleted_says_so(master: MasterFactory) -> None:
    m = await master()
    await m.call("POST", "/", {"name": "p"})
    key = {"Idempotency-Key": "k-1"}
    status, _ = await m.call("POST", "/projects/p", {"id": "t", "action": "x"}, headers=key)
    assert status == 201
    assert (await m.call("POST", "/projects/p", {"action": "x"}, headers=key))[1]["id"] == "t"
    async with MasterClient(m.url, join=m.join) as client:
        worker = (await client.register(REG)).worker
        await _run_one(m, client, worker)
    assert (await m.call("DELETE", "/projects/p/tasks/t"))[0] == 200
    status, answer = await m.call("POST", "/projects/p", {"action": "x"}, headers=key)
    assert status == 409 and answer["field"] == "Idempotency-Key", answer
    assert "deleted" in answer["error"]
