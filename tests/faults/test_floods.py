"""Floods the master must survive: endless output, huge bodies, stalled clients, a full store."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from http.client import HTTPConnection, RemoteDisconnected
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from harness import CONFIG, REG, Http, Proc, free_port, join_token, start_master, wait_until

from asphalt.master.app import build_app
from asphalt.master.http.common import BODY_TIMEOUT_S
from asphalt.master.store import Store
from asphalt.protocol import STDOUT, to_json

MIB = 1 << 20
CAP = 1 * MIB
# A leak check, not a benchmark: a master that kept what it was sent would grow by far more.
RSS_SLACK = 150 * MIB


class Masters:
    """Masters started by one test, on one data directory; each is stopped when the test ends."""

    def __init__(self, tmp: Path) -> None:
        self.data = tmp / "data"
        self.procs: list[Proc] = []

    def start(self, *extra: str) -> tuple[Proc, Http, int]:
        port = free_port()
        proc, http = start_master(self.data, port, *extra)
        self.procs.append(proc)
        return proc, http, port

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            if proc.popen.poll() is None:
                proc.stop()


@pytest.fixture
def masters(tmp_path: Path) -> Iterator[Masters]:
    m = Masters(tmp_path)
    yield m
    m.stop_all()


def rss(proc: Proc) -> int:
    """The process's resident memory in bytes."""
    for line in Path(f"/proc/{proc.popen.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc status")


HELD = ("01", "08")  # in /proc/net/tcp: ESTABLISHED, and CLOSE_WAIT (the client has closed)


def held_connections(port: int, peers: set[int] | None = None) -> int:
    """TCP connections the master holds on its port: open, or closed by the client but not by it
    (with `peers`, only those from these client ports)."""
    held = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote, state = line.split()[1], line.split()[2], line.split()[3]
        ours = peers is None or int(remote.split(":")[1], 16) in peers
        held += int(local.split(":")[1], 16) == port and state in HELD and ours
    return held


def raw_output(http: Http, job_id: str) -> bytes:
    """GET /jobs/J/output as the bytes the master stored, undecoded."""
    with urllib.request.urlopen(f"{http.base}/jobs/{job_id}/output", timeout=30) as response:
        data: bytes = response.read()
        return data


def all_task_ids(http: Http, project: str) -> set[str]:
    """Every task of the project, following the pages."""
    ids: set[str] = set()
    path: str | None = f"/projects/{project}?limit=500"
    while path:
        page = http.get(path)
        ids.update(t["id"] for t in page["tasks"])
        path = page["next"]
    return ids


def wait_sampling_rss(proc: Proc, check: Any, timeout_s: float, what: str) -> tuple[Any, int]:
    """wait_until, also returning the highest RSS seen while waiting."""
    peak = rss(proc)

    def sampled() -> Any:
        nonlocal peak
        peak = max(peak, rss(proc))
        return check()

    return wait_until(sampled, timeout_s, what), peak


def assert_cut_at_cap(data: bytes, what: str, last: bytes | None = None) -> None:
    """The output kept is its first part, one marker, and its end (`last`, when known)."""
    size = len(data)
    head = data[: CAP // 2]
    marker = data[CAP // 2 : CAP // 2 + 120]
    assert marker.startswith(b"\n[asphalt: ") and b"bytes of output dropped here" in marker, (
        f"{what}: {size} bytes stored, {marker!r} after the head; expected the marker"
    )
    assert CAP < size <= CAP + 200, f"{what}: {size} bytes stored for a cap of {CAP}"
    assert b"dropped here" not in head and b"dropped here" not in data[CAP // 2 + 120 :]
    if last is not None:
        assert data.endswith(last), f"{what}: ends {data[-120:]!r}, not {last[-120:]!r}"


def test_endless_output_is_cut_at_the_cap_with_a_marker_and_master_memory_stays_flat(
    masters: Masters,
) -> None:
    proc, http, _ = masters.start("-output-cap", str(CAP), "-slots", "4")
    http.post("/", {"name": "flood"})
    for _ in range(20):  # warm up the code paths before taking the baseline
        http.get("/")
    before = rss(proc)
    floods = {
        "yes": "yes",
        # 20 KiB lines: longer than any line buffer of 16 KiB.
        "long-lines": "yes \"$(head -c 20000 /dev/zero | tr '\\0' x)\"",
        "binary": "cat /dev/urandom",
    }
    for task, action in floods.items():
        http.post("/projects/flood", {"id": task, "action": action, "timeout": 4})

    def all_done() -> list[dict[str, Any]] | None:
        done = [http.task_done("flood", task) for task in floods]
        return None if None in done else done  # type: ignore[return-value]

    done, peak = wait_sampling_rss(proc, all_done, 60, "the floods to time out")
    assert peak - before < RSS_SLACK, f"master RSS grew from {before >> 20} to {peak >> 20} MiB"
    for task in done:
        main = task["jobs"]["main"]
        assert main["state"] == "timed_out", (task["id"], main["state"], main.get("reason"))
        assert_cut_at_cap(raw_output(http, main["id"]), task["id"])
    assert http.call("GET", "/")[0] == 200 and proc.popen.poll() is None


def test_output_that_fills_the_cap_exactly_still_gets_the_cut_marker(tmp_path: Path) -> None:
    # Workers send 64 KiB pieces, so a cap that is a multiple of 64 KiB is filled exactly.
    store = Store(tmp_path / "store")
    try:
        piece = b"y\n" * (32 << 10)
        received = 0
        for _ in range(CAP // len(piece) + 2):
            received = store.append_output("j", 1, received, [(STDOUT, piece)], CAP)
        assert received == CAP + 2 * len(piece)
        assert_cut_at_cap(store.output("j", 1).data, "a cap filled by whole pieces", piece)
    finally:
        store.close()


def test_binary_output_and_lines_over_16_kib_come_back_byte_exact_under_the_cap(
    masters: Masters, tmp_path: Path
) -> None:
    _, http, _ = masters.start("-output-cap", str(CAP))
    printed = tmp_path / "printed"
    # Every byte value, invalid UTF-8 at chunk edges, a 40 KiB line, and no final newline.
    pattern = bytes(range(256)) * 512 + os.urandom(300_000) + b"a" * 40_000 + b"\n" + b"b" * 20_000
    printed.write_bytes(pattern)
    http.post("/", {"name": "p"})
    http.post("/projects/p", {"id": "exact", "action": f"cat '{printed}'"})
    done = wait_until(lambda: http.task_done("p", "exact"), 30, "the job")
    main = done["jobs"]["main"]
    assert main["state"] == "succeeded"
    data = raw_output(http, main["id"])
    assert len(data) == len(pattern) and data == pattern


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_100_mb_body_gets_413_quickly_and_the_master_keeps_serving(
    masters: Masters, framing: str
) -> None:
    proc, http, port = masters.start("-no-worker")
    before = rss(proc)
    total, piece = 100_000_000, b"x" * (64 << 10)
    started = time.monotonic()
    conn = HTTPConnection("127.0.0.1", port, timeout=30)
    status: int | None = None
    body = b""
    try:
        conn.putrequest("POST", "/")
        if framing == "chunked":
            conn.putheader("Transfer-Encoding", "chunked")
            frame = b"%x\r\n%s\r\n" % (len(piece), piece)
        else:
            conn.putheader("Content-Length", str(total))
            frame = piece
        conn.endheaders()
        sent = 0
        try:
            while sent < total:
                conn.send(frame)
                sent += len(piece)
            if framing == "chunked":
                conn.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the master stopped reading: that is allowed, if it keeps serving
        try:
            response = conn.getresponse()
            status, body = response.status, response.read()
        except (ConnectionResetError, RemoteDisconnected, BrokenPipeError):
            status = None
    finally:
        conn.close()
    elapsed = time.monotonic() - started
    assert status in (413, None), (status, body)
    if status == 413:
        assert b'"error"' in body and b"limit" in body, body
    assert elapsed < 20, f"a 100 MB body took {elapsed:.1f} s to refuse"
    assert http.call("GET", "/")[0] == 200
    assert proc.popen.poll() is None
    assert rss(proc) - before < 50 * MIB, "the master kept the refused body in memory"
    assert http.get("/")["projects"] == []


def _stall(port: int, prefix: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(prefix)
    return sock


def test_200_stalled_clients_do_not_stop_others_from_being_served(masters: Masters) -> None:
    proc, http, port = masters.start("-slots", "2")
    before = held_connections(port)
    half_header = b"POST /projects/p HTTP/1.1\r\nHost: 127.0."
    half_body = b'POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n{"name": "stal'
    half_task = (
        b"POST /projects/p HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n"
        b'{"action": "echo never'
    )
    stalled: list[socket.socket] = []
    try:
        for i in range(200):
            stalled.append(_stall(port, (half_header, half_body, half_task)[i % 3]))
        # Counted by their own ports: the embedded worker's connections come and go meanwhile.
        peers = {sock.getsockname()[1] for sock in stalled}
        wait_until(lambda: held_connections(port, peers) == 200, 10, "the master to take them")

        started = time.monotonic()
        http.post("/", {"name": "p"})
        http.post("/projects/p", {"id": "t", "action": "echo still served"})
        assert http.get("/projects/p/tasks/t")["id"] == "t"
        done = wait_until(lambda: http.task_done("p", "t"), 30, "the job to run")
        assert done["jobs"]["main"]["output"] == "still served\n"
        assert time.monotonic() - started < 15
    finally:
        for sock in stalled:
            sock.close()
    # Nothing half-sent became a record, and every stalled connection is let go.
    assert [p["name"] for p in http.get("/")["projects"]] == ["p"]
    assert all_task_ids(http, "p") == {"t"}
    # (The embedded worker's own keep-alive connections may have grown by a few meanwhile.)
    wait_until(lambda: held_connections(port) <= before + 10, 15, "the master to let them go")
    assert proc.popen.poll() is None


async def _stall_then_read_answer(port: int, head: bytes) -> tuple[bytes, bytes]:
    """Send headers promising 100 bytes and only part of them; return the answer's head and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + b"Content-Length: 100\r\n\r\n" + b'{"name": "p')
        await writer.drain()
        try:
            async with asyncio.timeout(5):
                answer = await reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            raise AssertionError("no answer in 5 s: the master still waits for the body") from None
        length = next(
            int(line.split(b":")[1])
            for line in answer.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        async with asyncio.timeout(5):
            return answer, await reader.readexactly(length)
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/", None),
        ("/", "application/x-www-form-urlencoded"),  # what curl --data sends
        ("/_worker/{worker}/jobs/j/output?attempt=1&offset=0", None),
    ],
    ids=["json", "curl-form", "worker-output"],
)
async def test_a_body_that_stops_arriving_gets_408_and_connection_close(
    tmp_path: Path, path: str, content_type: str | None
) -> None:
    app = build_app(replace(CONFIG, data_dir=tmp_path / "data"))
    app[BODY_TIMEOUT_S] = 0.5
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            url = str(server.make_url("/_worker/register"))
            join = {"Authorization": f"Bearer {join_token(tmp_path / 'data')}"}
            async with session.post(url, json=to_json(REG), headers=join) as r:
                assert r.status == 201
                welcome = await r.json()
        head = f"POST {path.format(worker=welcome['worker'])} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if path.startswith("/_worker/"):  # the user API on loopback needs no token
            head += f"Authorization: Bearer {welcome['secret']}\r\n"
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        answer, body = await _stall_then_read_answer(server.port or 0, head.encode())
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"connection: close" in answer.lower(), answer
        assert b'"error":"the request body did not arrive within 0.5 s' in body, body
    finally:
        await server.close()


def test_a_full_store_answers_507_keeps_reading_and_keeps_what_it_acknowledged(
    masters: Masters,
) -> None:
    proc, http, _ = masters.start("-no-worker", "-map-size", "1")
    http.post("/", {"name": "p"})
    acknowledged: list[str] = []
    refusals: list[tuple[int, Any]] = []
    # LMDB may find room for a later write after refusing one, so fill until refusals repeat.
    for i in range(5000):
        status, body = http.call(
            "POST", "/projects/p", {"id": f"t{i}", "action": "echo " + "x" * 1000}
        )
        if status == 201:
            acknowledged.append(body["id"])
        else:
            refusals.append((status, body))
            if len(refusals) == 10:
                break
    assert refusals, "a 1 MiB store took 5000 tasks"
    for status, body in refusals:
        assert status == 507, (status, body)
        assert "full" in body["error"] and "-map-size" in body["error"], body
    assert len(acknowledged) > 10

    assert http.call("GET", "/")[0] == 200
    assert http.call("GET", "/projects/p")[0] == 200
    assert http.call("GET", f"/projects/p/tasks/{acknowledged[0]}")[0] == 200
    assert http.call("GET", f"/projects/p/tasks/{acknowledged[-1]}")[0] == 200
    assert all_task_ids(http, "p") == set(acknowledged)
    assert proc.popen.poll() is None

    proc.stop()
    assert proc.popen.returncode == 0, proc.logs()[-3000:]
    _, http, _ = masters.start("-no-worker", "-map-size", "1")
    assert all_task_ids(http, "p") == set(acknowledged)
    assert http.get(f"/projects/p/tasks/{acknowledged[-1]}")["jobs"]["main"]["state"] == "queued"

    masters.procs[-1].stop()
    _, http, _ = masters.start("-no-worker", "-map-size", "64")
    assert all_task_ids(http, "p") == set(acknowledged)
    http.post("/projects/p", {"id": "after-growing", "action": "echo fits now"})
