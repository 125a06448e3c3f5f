"""The worker protocol against a real master over HTTP, with protocol calls made by hand."""

from __future__ import annotations

import asyncio
import io
import json
import time
from typing import Any

import pytest
from harness import REG, Master, MasterFactory

from asphalt.protocol import PROTOCOL, Finish, Lease
from asphalt.wire import replace
from asphalt.worker.client import MasterClient, Refused, Stale

# A finish for the first attempt that says it succeeded.
SUCCEEDED = Finish(
    attempt=1, state="succeeded", status=0, reason=None, started_at=1.0, ended_at=2.0
)


async def _leased(m: Master, client: MasterClient) -> tuple[str, Lease]:
    """A registered worker, and the lease of a new task's main job (action "x")."""
    w = (await client.register(REG)).worker
    await m.new_task({"main": {"action": "x"}})
    lease = await client.lease(w)
    assert lease is not None
    return w, lease


async def test_lease_returns_204_when_no_job_fits(master: MasterFactory) -> None:
    m = await master()
    async with MasterClient(m.url, join=m.join) as client:
        welcome = await client.register(REG)
        await m.new_task({"main": {"action": "x", "types": ["gpu"]}})
        started = time.monotonic()
        assert await client.lease(welcome.worker) is None
        assert time.monotonic() - started >= 0.25  # it was held, not answered at once


async def test_a_waiting_worker_is_handed_a_new_job_at_once(master: MasterFactory) -> None:
    m = await master(poll_hold_s=20.0)
    async with MasterClient(m.url, join=m.join, poll_hold_s=20.0) as client:
        welcome = await client.register(REG)
        polling = asyncio.create_task(client.lease(welcome.worker))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        await m.new_task({"main": {"action": "echo hi"}})
        lease = await asyncio.wait_for(polling, 5)
        assert lease is not None and lease.attempt == 1 and lease.spec.action == "echo hi"
        assert time.monotonic() - started < 15  # woken, not the 20 s hold
        assert lease.env["ASPHALT_TASK_ID"] == "t"
        assert (await m.task("p", "t"))["jobs"]["main"]["state"] == "running"


async def test_stale_attempts_are_refused_and_a_repeated_finish_changes_nothing(
    master: MasterFactory,
) -> None:
    m = await master()
    async with MasterClient(m.url, join=m.join) as client:
        w, lease = await _leased(m, client)
        with pytest.raises(Stale):
            await client.output(w, lease.job, lease.attempt + 1, 0, b"x")
        assert await client.output(w, lease.job, 1, 0, b"hello ") == 6
        assert await client.output(w, lease.job, 1, 0, b"hello ") == 6  # resent after a lost answer
        assert await client.output(w, lease.job, 1, 6, b"world") == 11
        fin = Finish(attempt=1, state="failed", status=2, reason=None, started_at=1.0, ended_at=2.0)
        with pytest.raises(Stale):
            await client.finish(w, lease.job, replace(fin, attempt=2))
        await client.finish(w, lease.job, fin)
        await client.finish(w, lease.job, fin)
        job = (await m.task("p", "t"))["jobs"]["main"]
        assert (job["state"], job["status"], job["output"]) == ("failed", 2, "hello world")
        with pytest.raises(Stale):
            await client.output(w, lease.job, 1, 11, b"late")


async def test_a_finish_asking_for_more_is_answered_with_the_next_queued_job(
    master: MasterFactory,
) -> None:
    m = await master()
    async with MasterClient(m.url, join=m.join) as client:
        w = (await client.register(REG)).worker
        await m.new_task({"main": {"action": "first"}}, task="a")
        await m.new_task({"main": {"action": "second"}}, task="b")
        first = await client.lease(w)
        assert first is not None and first.spec.action == "first"
        fin = SUCCEEDED
        second = await client.finish(w, first.job, replace(fin, next=True))
        assert second is not None and (second.spec.action, second.attempt) == ("second", 1)
        assert (await m.task("p", "b"))["jobs"]["main"]["state"] == "running"
        # Nothing left: the answer says so at once rather than holding the call.
        started = time.monotonic()
        assert await client.finish(w, second.job, replace(fin, next=True)) is None
        assert time.monotonic() - started < 0.25
        # Without asking, a finish never hands out work.
        await m.new_task({"main": {"action": "third"}}, task="c")
        third = await client.lease(w)
        assert third is not None
        assert await client.finish(w, third.job, fin) is None


async def test_a_finish_sent_again_after_a_lost_answer_gets_the_same_next_job(
    master: MasterFactory,
) -> None:
    m = await master()
    async with MasterClient(m.url, join=m.join) as client:
        w = (await client.register(REG)).worker
        for name in ("a", "b", "c"):
            await m.new_task({"main": {"action": name}}, task=name)
        first = await client.lease(w)
        assert first is not None
        fin = SUCCEEDED
        fin = replace(fin, next=True)
        second = await client.finish(w, first.job, fin)
        again = await client.finish(w, first.job, fin)  # as if the first answer never arrived
        assert second is not None and again == second
        assert (await m.task("p", "c"))["jobs"]["main"]["state"] == "queued"  # not a third
        assert (await m.task("p", "b"))["jobs"]["main"]["attempt"] == 1


async def test_a_draining_worker_is_not_sent_more_with_a_finish(master: MasterFactory) -> None:
    m = await master(heartbeat_s=0.2)
    async with MasterClient(m.url, join=m.join) as client:
        w = (await client.register(REG)).worker
        await m.new_task({"main": {"action": "first"}}, task="a")
        await m.new_task({"main": {"action": "second"}}, task="b")
        first = await client.lease(w)
        assert first is not None
        await client.heartbeat(w, [(first.job, 1)], 0.2, draining=True)
        fin = SUCCEEDED
        assert await client.finish(w, first.job, replace(fin, next=True)) is None
        assert (await m.task("p", "b"))["jobs"]["main"]["state"] == "queued"


async def test_a_finish_with_next_that_is_not_true_or_false_is_refused(
    master: MasterFactory,
) -> None:
    m = await master()
    async with MasterClient(m.url, join=m.join) as client:
        w, lease = await _leased(m, client)
        body = {"attempt": 1, "state": "succeeded", "status": 0, "reason": None}
        body |= {"started_at": 1.0, "ended_at": 2.0, "next": "yes"}
        path = f"/_worker/{w}/jobs/{lease.job}/finish"
        status, answer = await m.call("POST", path, body, headers=client.auth_headers())
    assert status == 400 and answer["field"] == "next", answer
    assert (await m.task("p", "t"))["jobs"]["main"]["state"] == "running"


async def test_a_lease_not_renewed_ends_the_job_lost_and_sets_off_failure(
    master: MasterFactory,
) -> None:
    m = await master(lease_s=0.5, lost_retries=0)
    async with MasterClient(m.url, join=m.join) as client:
        w = (await client.register(REG)).worker
        await m.new_task({"main": {"action": "x"}, "failure": {"action": "y"}})
        assert await client.lease(w) is not None
        await asyncio.sleep(2.0)  # no heartbeat: the worker is gone as far as the master knows
        task = await m.task("p", "t")
        main = task["jobs"]["main"]
        assert main["state"] == "lost" and "lease" in main["reason"]
        failure = await client.lease(w)
        assert failure is not None and failure.env["ASPHALT_MAIN_STATE"] == "lost"


async def test_an_old_attempt_beside_the_held_one_does_not_get_the_job_forgotten(
    master: MasterFactory,
) -> None:
    m = await master(lease_s=0.5)
    async with MasterClient(m.url, join=m.join) as client:
        w = (await client.register(REG)).worker
        await m.new_task({"main": {"action": "x", "retries": 1, "backoff": 0}})
        first = await client.lease(w)
        assert first is not None and first.attempt == 1
        await asyncio.sleep(2.0)  # the lease runs out; the retry comes back to this worker
        second = await client.lease(w)
        assert second is not None and (second.job, second.attempt) == (first.job, 2)
        reply = await client.heartbeat(w, [(first.job, 1), (first.job, 2)], 0.2)
        assert reply.forget == []  # attempt 2 is held; stopping the id would stop it too
        reply = await client.heartbeat(w, [(first.job, 1)], 0.2)
        assert reply.forget == [first.job]


async def test_heartbeats_renew_leases_and_carry_cancels_back(master: MasterFactory) -> None:
    m = await master(lease_s=0.8, heartbeat_s=0.4)
    async with MasterClient(m.url, join=m.join) as client:
        w = (await client.register(REG)).worker
        await m.new_task({"main": {"action": "x"}})
        lease = await client.lease(w)
        assert lease is not None
        for _ in range(5):  # held ~0.4 s each: two seconds, over two leases
            reply = await client.heartbeat(w, [(lease.job, 1)], 0.4)
            assert reply.cancel == [] and reply.forget == []
        assert (await m.task("p", "t"))["jobs"]["main"]["state"] == "running"
        held = asyncio.create_task(client.heartbeat(w, [(lease.job, 1)], 0.4))
        await asyncio.sleep(0.1)
        assert (await m.call("POST", "/projects/p/tasks/t/cancel"))[0] == 200
        reply = await asyncio.wait_for(held, 3)
        assert reply.cancel == [lease.job]
        stale = await client.heartbeat(w, [(lease.job, 7)], 0.4)
        assert stale.forget == [lease.job]


async def test_reactions_are_served_before_new_main_jobs(master: MasterFactory) -> None:
    m = await master()
    async with MasterClient(m.url, join=m.join) as client:
        w = (await client.register(REG)).worker
        await m.new_task({"main": {"action": "main1"}, "success": {"action": "react"}}, "a")
        first = await client.lease(w)
        assert first is not None and first.spec.action == "main1"
        await m.new_task({"main": {"action": "main2"}}, "b")
        fin = SUCCEEDED
        await client.finish(w, first.job, fin)
        second = await client.lease(w)
        assert second is not None and second.spec.action == "react"


async def test_unknown_worker_is_told_to_register(master: MasterFactory) -> None:
    m = await master()
    bearer = {"Authorization": "Bearer something"}
    status, body = await m.call("POST", "/_worker/nobody/lease", {}, headers=bearer)
    assert status == 404 and "register" in body["error"]


@pytest.mark.parametrize(
    ("method", "path", "raw", "status", "words"),
    [
        ("POST", "/", b"{not json", 400, "not valid JSON"),
        ("POST", "/", b"", 400, "empty"),
        ("POST", "/", b'{"name": 5}', 400, "name"),
        ("POST", "/projects/nope", b'{"action": "x"}', 404, "no project"),
        ("GET", "/projects/p/tasks/nope", None, 404, "no task"),
        ("GET", "/jobs/nope", None, 404, "no job"),
        ("GET", "/nothing/here", None, 404, "nothing at"),
        ("DELETE", "/", None, 405, "not allowed"),
        (
            "POST",
            "/projects/p",
            b'{"jobs": {"main": {"action": "x", "timeout": "soon"}}}',
            400,
            "timeout",
        ),
        ("GET", "/projects/p?limit=0", None, 400, "limit"),
        ("GET", "/projects/p/tasks/t?run=9", None, 404, "no run"),
        ("POST", "/", b"x" * (2 << 20), 413, "limit"),
    ],
)
async def test_bad_input_gets_a_clear_4xx_and_the_master_keeps_serving(
    master: MasterFactory, method: str, path: str, raw: bytes | None, status: int, words: str
) -> None:
    m = await master()
    await m.new_task({"main": {"action": "x"}})
    data = io.BytesIO(raw) if raw is not None else None
    async with m.session.request(method, m.url + path, data=data) as r:
        body = await r.json(content_type=None)
        assert r.status == status, body
        assert words in body["error"]
    assert (await m.call("GET", "/"))[0] == 200


async def test_a_duplicate_project_or_task_is_409(master: MasterFactory) -> None:
    m = await master()
    await m.new_task({"main": {"action": "x"}})
    assert (await m.call("POST", "/", {"name": "p"}))[0] == 409
    status, body = await m.call("POST", "/projects/p", {"id": "t", "action": "x"})
    assert status == 409 and body["field"] == "id"


@pytest.mark.parametrize(
    "path",
    [
        "/projects/p?limit=%C2%B2",
        "/projects/p/tasks/t?run=%C2%B2",
        "/projects/p?before=zzz",
        "/jobs/{job}/output?attempt=%C2%B2",
        "/jobs/{job}/output?attempt=0",
    ],
)
async def test_odd_query_strings_are_4xx(master: MasterFactory, path: str) -> None:
    m = await master()
    await m.new_task({"main": {"action": "x"}})
    job = (await m.task("p", "t"))["jobs"]["main"]["id"]
    status, body = await m.call("GET", path.format(job=job))
    assert 400 <= status < 500 and body["error"], body


async def test_a_body_nested_too_deeply_is_400(master: MasterFactory) -> None:
    m = await master()
    raw = b"[" * 200_000 + b"]" * 200_000
    async with m.session.post(m.url + "/", data=io.BytesIO(raw)) as r:
        assert r.status == 400 and "nests" in (await r.json())["error"]


async def test_an_absurd_last_event_id_still_streams(master: MasterFactory) -> None:
    m = await master()
    await m.new_task({"main": {"action": "x"}})
    job = (await m.task("p", "t"))["jobs"]["main"]["id"]
    await m.call("POST", "/projects/p/tasks/t/cancel")
    for resume in ("²", "9" * 40, "-3"):
        headers = {"Accept": "text/event-stream", "Last-Event-ID": resume}
        async with m.session.get(f"{m.url}/jobs/{job}/output", headers=headers) as r:
            assert r.status == 200 and "event: end" in await r.text()


@pytest.mark.parametrize(
    "change",
    [
        {"started_at": 1e300},
        {"ended_at": -1.0},
        {"ended_at": float("nan")},
        {"status": 10**23},
        {"attempt": 10**30},
        {"state": "exploded"},
    ],
)
async def test_a_bad_finish_is_refused_and_the_lease_stands(
    master: MasterFactory, change: dict[str, Any]
) -> None:
    m = await master(lease_s=30.0)
    async with MasterClient(m.url, join=m.join) as client:
        w = (await client.register(REG)).worker
        await m.new_task({"main": {"action": "x"}})
        lease = await client.lease(w)
        assert lease is not None
        body: dict[str, Any] = {"attempt": 1, "state": "succeeded", "status": 0, "reason": None}
        body |= {"started_at": 1.0, "ended_at": 2.0}
        path = f"/_worker/{w}/jobs/{lease.job}/finish"
        raw = json.dumps({**body, **change}).encode()
        async with m.session.post(m.url + path, data=raw, headers=client.auth_headers()) as r:
            assert r.status == 400, await r.text()
        assert (await m.task("p", "t"))["jobs"]["main"]["state"] == "running"
        reply = await client.heartbeat(w, [(lease.job, 1)], 0.2)
        assert reply.forget == []
        await client.finish(w, lease.job, Finish(**body))
        assert (await m.task("p", "t"))["status"] == "complete"


async def test_a_bad_registration_leaves_no_worker_behind(master: MasterFactory) -> None:
    m = await master()
    body = {
        "name": "w",
        "host": "h",
        "types": [],
        "runtimes": ["host"],
        "version": "1",
        "protocol": PROTOCOL,
    }
    for slots in (10**23, 0, "2", None):
        join = {"Authorization": f"Bearer {m.join}"}
        sent = {**body, "slots": slots}
        status, _ = await m.call("POST", "/_worker/register", sent, headers=join)
        assert status == 400
    assert (await m.call("GET", "/workers"))[1]["workers"] == []
    assert (await m.call("GET", "/workers?all=true"))[1]["workers"] == []
    status, answer = await m.call("GET", "/workers?all=maybe")
    assert status == 400 and answer["field"] == "all", answer


async def test_a_worker_of_another_release_is_told_to_upgrade_and_stops(
    master: MasterFactory,
) -> None:
    """A worker from before the lease carried the job's record sends no protocol: it is refused
    at the door (400 naming `protocol`) instead of joining and refusing every lease, and the
    worker's client takes it as a refusal a person must act on, not a call to retry."""
    m = await master()
    join = {"Authorization": f"Bearer {m.join}"}
    old = {"name": "w", "host": "h", "types": [], "runtimes": ["host"], "slots": 1, "version": "0"}
    status, answer = await m.call("POST", "/_worker/register", old, headers=join)
    assert status == 400 and answer["field"] == "protocol", answer
    assert f"speaks protocol 1 and this master speaks {PROTOCOL}" in answer["error"], answer
    async with MasterClient(m.url, join=m.join) as client:
        with pytest.raises(Refused, match="run the same release of Asphalt on both"):
            await client.register(replace(REG, protocol=PROTOCOL + 1))
    assert (await m.call("GET", "/workers?all=true"))[1]["workers"] == []


async def test_a_project_name_may_not_be_another_projects_id(master: MasterFactory) -> None:
    m = await master()
    assert (await m.call("POST", "/", {"name": "alpha", "id": "p-alpha"}))[0] == 201
    assert (await m.call("POST", "/", {"name": "p-alpha"}))[0] == 409
    assert (await m.call("POST", "/", {"name": "beta", "id": "alpha"}))[0] == 409
    assert (await m.call("GET", "/projects/alpha"))[1]["id"] == "p-alpha"
