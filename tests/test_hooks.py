"""Webhooks: signed deliveries written with the change they report, retried until a receiver
(a real aiohttp server, or a plain one in a thread) takes them, kept across a master's kill -9."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from harness import REG, Cluster, MasterFactory, wait_until

from asphalt.master.http.common import SCHEDULER
from asphalt.protocol import Finish
from asphalt.worker.client import MasterClient


def _verified(secret: str, headers: Any, body: bytes) -> bool:
    """Check Asphalt-Signature as a receiver would: t=...,v1=HMAC-SHA256("{t}.{body}")."""
    parts = dict(p.split("=", 1) for p in headers["Asphalt-Signature"].split(","))
    mac = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256)
    recent = abs(time.time() - int(parts["t"])) < 300
    return recent and hmac.compare_digest(mac.hexdigest(), parts["v1"])


async def test_a_receiver_that_refuses_twice_gets_the_third_try_signed(
    master: MasterFactory,
) -> None:
    seen: list[tuple[dict[str, str], bytes]] = []

    async def receive(request: web.Request) -> web.Response:
        seen.append((dict(request.headers), await request.read()))
        return web.Response(status=500 if len(seen) <= 2 else 204, text="busy")

    app = web.Application()
    app.router.add_post("/hook", receive)
    async with TestServer(app, host="127.0.0.1") as receiver:
        m = await master(hook_retry_s=0.1)
        await m.call("POST", "/", {"name": "p"})
        hook = {"url": str(receiver.make_url("/hook")), "events": ["task.completed"]}
        status, made = await m.call("POST", "/projects/p/hooks", hook)
        assert status == 201 and len(made["secret"]) == 64, made
        secret = made["secret"]
        await m.call("POST", "/projects/p", {"id": "t", "action": "x"})
        async with MasterClient(m.url, join=m.join) as client:
            worker = (await client.register(REG)).worker
            lease = await client.lease(worker)
            assert lease is not None
            fin = Finish(
                attempt=1, state="succeeded", status=0, reason=None, started_at=1.0, ended_at=2.0
            )
            await client.finish(worker, lease.job, fin)
        for _ in range(100):
            if len(seen) >= 3:
                break
            await asyncio.sleep(0.1)
        assert len(seen) == 3, seen
        ids = {headers["Asphalt-Delivery"] for headers, _ in seen}
        assert len(ids) == 1  # one delivery, the same id on every try
        assert all(_verified(secret, headers, body) for headers, body in seen)
        assert not _verified("another secret, not the hook's", *seen[-1])
        headers, body = seen[-1]
        assert headers["Asphalt-Event"] == "task.completed"
        sent = json.loads(body)
        assert sent["event"] == "task.completed" and sent["task"]["id"] == "t"
        assert sent["task"]["outcome"] == "succeeded" and sent["task"]["status"] == "complete"
        path = f"/projects/p/hooks/{made['id']}/deliveries"
        _, listed = await m.call("GET", path)
        (delivery,) = listed["deliveries"]
        assert delivery["id"] in ids and delivery["state"] == "delivered"
        assert delivery["tries"] == 3 and delivery["lastStatus"] == 204
        async with m.session.get(m.url + "/metrics") as r:
            metrics = await r.text()
        assert 'asphalt_hook_deliveries_total{outcome="retry"} 2.0' in metrics
        assert 'asphalt_hook_deliveries_total{outcome="delivered"} 1.0' in metrics
        assert "asphalt_hook_outbox 0.0" in metrics
        status, again = await m.call("POST", f"{path}/{delivery['id']}/redeliver")
        assert status == 202 and again["state"] == "pending", again
        for _ in range(50):
            if len(seen) >= 4:
                break
            await asyncio.sleep(0.1)
        assert len(seen) == 4 and seen[3][0]["Asphalt-Delivery"] == delivery["id"]
        assert (await m.call("DELETE", f"/projects/p/hooks/{made['id']}"))[0] == 200
        store = m.server.app[SCHEDULER].store
        for table in ("deliveries", "delivery_keys", "outbox"):
            assert store.look(lambda t, table=table: list(t.keys(table, b""))) == []


async def test_hooks_are_checked_kept_for_admins_and_never_show_their_secret(
    master: MasterFactory,
) -> None:
    m = await master()
    await m.call("POST", "/", {"name": "p"})
    for body, field in (
        ({"url": "ftp://x/y", "events": ["job.ended"]}, "url"),
        ({"url": "https://x/y", "events": ["job.done"]}, "events"),
        ({"url": "https://x/y", "events": []}, "events"),
        ({"url": "https://x/y", "events": ["job.ended"], "secret": "short"}, "secret"),
        ({"url": "https://x/y", "events": ["job.ended"], "sercet": "s" * 20}, "sercet"),
    ):
        status, answer = await m.call("POST", "/projects/p/hooks", body)
        assert status == 400 and answer["field"] == field, (body, answer)
    given = {"url": "https://x/y", "events": ["job.failed"], "secret": "s3cr3t-of-sixteen!"}
    status, made = await m.call("POST", "/projects/p/hooks", given)
    assert status == 201 and "secret" not in made, made  # given, so not shown back
    _, listed = await m.call("GET", "/projects/p/hooks")
    assert [h["id"] for h in listed["hooks"]] == [made["id"]]
    assert "s3cr3t" not in json.dumps(listed)
    status, token = await m.call("POST", "/tokens", {"name": "r", "scope": "read"})
    reader = {"Authorization": f"Bearer {token['token']}"}
    status, _ = await m.call("GET", "/projects/p/hooks", headers=reader)
    assert status == 403  # a hook's URL may itself be a credential
    assert (await m.call("DELETE", f"/projects/p/hooks/{made['id']}"))[0] == 200
    assert (await m.call("GET", f"/projects/p/hooks/{made['id']}"))[0] == 404


class _Receiver(BaseHTTPRequestHandler):
    """Records each delivery; answers 503 until `open` is set."""

    seen: list[tuple[str, bytes]] = []
    open = threading.Event()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append((self.headers["Asphalt-Delivery"], body))
        self.send_response(200 if type(self).open.is_set() else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    class Receiver(_Receiver):
        seen: list[tuple[str, bytes]] = []
        open = threading.Event()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", Receiver
    server.shutdown()
    server.server_close()


def test_a_delivery_outlives_a_master_killed_right_after_the_task_completed(
    tmp_path: Path, receiver: tuple[str, type[_Receiver]]
) -> None:
    url, seen = receiver
    cluster = Cluster(tmp_path)
    try:
        http = cluster.master()
        http.post("/", {"name": "p"})
        hook = http.post("/projects/p/hooks", {"url": url, "events": ["task.completed"]})
        http.post("/projects/p", {"id": "t", "action": "true"})
        wait_until(lambda: http.task_done("p", "t"), 30, "the task to complete")
        assert cluster.master_proc is not None
        cluster.master_proc.kill()  # the delivery was refused (503) or not tried yet
        seen.open.set()
        http = cluster.master()
        wait_until(
            lambda: any(True for _ in seen.seen) and _delivered(http, hook["id"]),
            60,
            "the delivery to arrive after the restart",
        )
        ids = {delivery for delivery, _ in seen.seen}
        assert len(ids) == 1, seen.seen
        assert json.loads(seen.seen[-1][1])["task"]["id"] == "t"
    finally:
        cluster.stop()


def _delivered(http: Any, hook: str) -> bool:
    listed = http.get(f"/projects/p/hooks/{hook}/deliveries")["deliveries"]
    return len(listed) == 1 and listed[0]["state"] == "delivered"
