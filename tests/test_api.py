"""The user API's listings and reruns, against a real master driven by a worker made by hand."""

from __future__ import annotations

import asyncio
import json

from harness import REG, MasterFactory

from asphalt.protocol import STDERR, STDOUT, Finish
from asphalt.worker.client import MasterClient

OK = Finish(attempt=1, state="succeeded", status=0, reason=None, started_at=1.0, ended_at=2.0)


async def test_project_lists_tasks_newest_first_in_pages(master: MasterFactory) -> None:
    m = await master()
    for i in range(5):
        await m.new_task({"main": {"action": "x"}}, f"t{i}")
    status, page = await m.call("GET", "/projects/p?limit=2")
    assert status == 200 and [t["id"] for t in page["tasks"]] == ["t4", "t3"]
    assert (
        page["tasks"][0]["status"] == "waiting" and "output" not in page["tasks"][0]["jobs"]["main"]
    )
    _, page2 = await m.call("GET", page["next"])
    assert [t["id"] for t in page2["tasks"]] == ["t2", "t1"]
    _, page3 = await m.call("GET", page2["next"])
    assert [t["id"] for t in page3["tasks"]] == ["t0"] and page3["next"] is None
    _, projects = await m.call("GET", "/")
    assert [p["name"] for p in projects["projects"]] == ["p"]


async def test_a_task_id_is_made_when_none_is_given(master: MasterFactory) -> None:
    m = await master()
    await m.call("POST", "/", {"name": "p"})
    status, task = await m.call("POST", "/projects/p", {"action": "x"})
    assert status == 201 and len(task["id"]) >= 8 and task["status"] == "waiting"
    assert task["jobs"]["main"]["reason"].startswith("no live worker")


async def test_rerunning_a_job_keeps_its_earlier_attempt(master: MasterFactory) -> None:
    m = await master()
    async with MasterClient(m.url, join=m.join) as client:
        w = (await client.register(REG)).worker
        await m.new_task({"main": {"action": "x"}, "success": {"action": "y"}})
        main = await client.lease(w)
        assert main is not None
        await client.output(w, main.job, 1, 0, b"first\n")
        await client.finish(w, main.job, OK)
        status, body = await m.call("POST", f"/jobs/{main.job}/rerun")
        assert status == 409 and "not ended" in body["error"]  # success has not run yet
        success = await client.lease(w)
        assert success is not None
        await client.finish(w, success.job, OK)

        status, job = await m.call("POST", f"/jobs/{main.job}/rerun")
        assert status == 201 and job["state"] == "queued" and job["attempt"] == 1
        again = await client.lease(w)
        assert again is not None and (again.job, again.attempt) == (main.job, 2)
        await client.output(w, main.job, 2, 0, b"second\n")
        failed = Finish(
            attempt=2, state="failed", status=1, reason=None, started_at=3.0, ended_at=4.0
        )
        await client.finish(w, main.job, failed)
        _, job = await m.call("GET", f"/jobs/{main.job}")
        assert (job["attempt"], job["state"], job["output"]) == (2, "failed", "second\n")
        assert [(a["attempt"], a["state"]) for a in job["attempts"]] == [(1, "succeeded")]
        async with m.session.get(f"{m.url}/jobs/{main.job}/output?attempt=1") as r:
            assert await r.text() == "first\n"
        task = await m.task("p", "t")
        assert task["jobs"]["success"]["state"] == "skipped"  # main failed this time


async def test_two_slow_requests_with_one_idempotency_key_make_one_task(
    master: MasterFactory,
) -> None:
    """Both bodies are still arriving when the key would have been checked: the key is checked
    once each body is in, so the second request answers with the task the first made."""
    m = await master()
    await m.call("POST", "/", {"name": "p"})
    body = json.dumps({"action": "echo once"}).encode()
    host, port = m.url.removeprefix("http://").split(":")
    head = (
        f"POST /projects/p HTTP/1.1\r\nHost: {host}\r\nIdempotency-Key: k-1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    streams = [await asyncio.open_connection(host, int(port)) for _ in range(2)]
    for _, writer in streams:
        writer.write(head + body[:5])
        await writer.drain()
    await asyncio.sleep(0.2)  # both are waiting for the rest of their body now
    answers = []
    for reader, writer in streams:
        writer.write(body[5:])
        await writer.drain()
        answers.append((await reader.readuntil(b"\r\n\r\n")).decode())
        writer.close()
    assert all(a.startswith("HTTP/1.1 201") for a in answers), answers
    _, page = await m.call("GET", "/projects/p")
    assert len(page["tasks"]) == 1, page


async def test_one_stream_followed_gets_a_character_split_by_the_other_stream_whole(
    master: MasterFactory,
) -> None:
    m = await master()
    async with MasterClient(m.url, join=m.join) as client:
        w = (await client.register(REG)).worker
        await m.new_task({"main": {"action": "x"}})
        lease = await client.lease(w)
        assert lease is not None
        euro = "€".encode()  # three bytes: stdout's first two, stderr's line, stdout's last
        pieces = [(STDOUT, b"a" + euro[:2]), (STDERR, b"E\n"), (STDOUT, euro[2:] + b"\n")]
        for offset, piece in zip((0, 3, 5), pieces, strict=True):
            await client.output(w, lease.job, 1, offset, [piece])
        await client.finish(w, lease.job, OK)
        url = f"{m.url}/jobs/{lease.job}/output"
        async with m.session.get(url, params={"follow": "1", "stream": "stdout"}) as r:
            assert await r.text() == "a€\n"
        async with m.session.get(url, params={"follow": "1", "stream": "stderr"}) as r:
            assert await r.text() == "E\n"
        async with m.session.get(url, params={"follow": "1"}) as r:
            assert (await r.read()) == b"a" + euro[:2] + b"E\n" + euro[2:] + b"\n"
        async with m.session.get(url, params={"follow": "1", "from": str(2**64)}) as r:
            assert r.status == 400  # an offset no output reaches: named, not a 500
