"""A task's own callback: task.completed POSTed to the URL it was created with, signed with the
secret given with it or with its project's, listed and sent again under the task."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from typing import Any

from harness import MasterFactory, end_jobs, receiver

OWN = "a-secret-of-the-tasks-own"
PROJECTS = "the-projects-callback-secret"


def _signed_with(secret: str, headers: Any, body: bytes) -> bool:
    parts = dict(p.split("=", 1) for p in headers["Asphalt-Signature"].split(","))
    mac = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(mac.hexdigest(), parts["v1"])


async def test_a_callback_gets_its_tasks_completion_signed_with_its_secret_or_the_projects(
    master: MasterFactory,
) -> None:
    async with receiver() as (server, got):
        seen = got.posts
        m = await master()
        await m.call("POST", "/", {"name": "p"})
        own = {"url": str(server.make_url("/own")), "secret": OWN}
        status, task = await m.call(
            "POST", "/projects/p", {"id": "a", "action": "x", "callback": own}
        )
        assert status == 201, task
        assert task["callback"]["url"] == own["url"] and OWN not in json.dumps(task)
        # Without a secret of its own a callback needs the project's: a 400 that says so.
        bare = {"id": "b", "action": "x", "callback": str(server.make_url("/bare"))}
        status, refused = await m.call("POST", "/projects/p", bare)
        assert status == 400 and refused["field"] == "callback", refused
        assert "callback_secret" in refused["error"]
        status, project = await m.call("PATCH", "/projects/p", {"callback_secret": PROJECTS})
        assert status == 200 and project["callbackSecret"] == "***", project
        status, _ = await m.call("POST", "/projects/p", bare)
        assert status == 201
        status, bad = await m.call("POST", "/projects/p", {"action": "x", "callback": "ftp://h/x"})
        assert status == 400 and bad["field"] == "callback", bad
        await end_jobs(m, 2, state="failed", status=2)
        await got.until(2)
        by_path = {path: (headers, body) for path, headers, body in seen}
        assert set(by_path) == {"/own", "/bare"}, seen
        assert _signed_with(OWN, *by_path["/own"]) and _signed_with(PROJECTS, *by_path["/bare"])
        assert not _signed_with(PROJECTS, *by_path["/own"])
        headers, body = by_path["/own"]
        sent = json.loads(body)
        assert headers["Asphalt-Event"] == "task.completed" and sent["task"]["id"] == "a"
        assert sent["task"]["outcome"] == "failed"

        status, listed = await m.call("GET", "/projects/p/tasks/a/deliveries")
        assert status == 200, listed
        (delivery,) = listed["deliveries"]
        assert delivery["id"] == headers["Asphalt-Delivery"] and delivery["state"] == "delivered"
        path = f"/projects/p/tasks/a/deliveries/{delivery['id']}/redeliver"
        status, again = await m.call("POST", path)
        assert status == 202 and again["id"] == delivery["id"], again
        await got.until(3)
        assert seen[-1][0] == "/own" and seen[-1][1]["Asphalt-Delivery"] == delivery["id"]

        # Deleting the task takes its callback's deliveries with it.
        status, _ = await m.call("DELETE", "/projects/p/tasks/a")
        assert status == 200
        status, _ = await m.call("GET", "/projects/p/tasks/a/deliveries")
        assert status == 404


async def test_a_callback_pointed_at_the_master_itself_gets_no_trust_from_loopback(
    master: MasterFactory,
) -> None:
    m = await master()
    await m.call("POST", "/", {"name": "p"})
    # A submitter aims the callback at an admin route, hoping the master trusts itself.
    callback = {"url": m.url + "/workers/join-token", "secret": OWN}
    status, _ = await m.call(
        "POST", "/projects/p", {"id": "t", "action": "x", "callback": callback}
    )
    assert status == 201
    await end_jobs(m, 1, state="failed", status=2)
    delivery: dict[str, Any] = {}
    for _ in range(100):
        _, listed = await m.call("GET", "/projects/p/tasks/t/deliveries")
        delivery = listed["deliveries"][0] if listed["deliveries"] else {}
        if delivery.get("tries"):
            break
        await asyncio.sleep(0.05)
    assert delivery["lastStatus"] == 401, delivery  # a delivery is never a local admin
    assert (m.data / "join.token").read_text().strip() == m.join  # not rotated
    # What a receiver answered is for admins: a read token sees the status, not the body.
    _, token = await m.call("POST", "/tokens", {"name": "r", "scope": "read"})
    reader = {"Authorization": f"Bearer {token['token']}"}
    _, seen = await m.call("GET", "/projects/p/tasks/t/deliveries", headers=reader)
    assert seen["deliveries"][0]["lastStatus"] == 401
    assert seen["deliveries"][0]["lastAnswer"] is None
