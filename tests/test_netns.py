"""Test hosts in network namespaces: reached over their veth, cut off from our loopback."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from netns import NetnsHost, test_host

from asphalt import tls

Serve = Callable[..., Awaitable[TestServer]]


async def _echo(request: web.Request) -> web.Response:
    peer = request.transport.get_extra_info("peername")[0] if request.transport else None
    return web.json_response(
        {"method": request.method, "body": (await request.read()).decode(), "peer": peer},
        status=201,
        headers={"X-Seen": request.headers.get("X-Probe", "")},
    )


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start a real aiohttp server (`/echo`, and 404 elsewhere) on a given address."""
    servers: list[TestServer] = []

    async def start(host: str, ssl_context: ssl.SSLContext | None = None) -> TestServer:
        app = web.Application()
        app.router.add_route("*", "/echo", _echo)
        server = TestServer(app, host=host)
        await server.start_server(ssl=ssl_context)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


def _gone(host: NetnsHost) -> bool:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    link = subprocess.run(["ip", "link", "show", "dev", host.host_veth], capture_output=True)
    return host.name not in listed.stdout.split() and link.returncode != 0


async def test_a_server_on_the_host_side_answers_a_request_from_inside(serve: Serve) -> None:
    with test_host() as host:
        server = await serve(host.host_ip)
        url = f"http://{host.host_ip}:{server.port}"
        status, headers, body = await asyncio.to_thread(
            host.http, "POST", f"{url}/echo", headers={"X-Probe": "hi"}, body=b"ping"
        )
        assert status == 201 and headers["x-seen"] == "hi"
        assert body == b'{"method": "POST", "body": "ping", "peer": "%s"}' % host.ns_ip.encode()
        status, _, _ = await asyncio.to_thread(host.http, "GET", f"{url}/nothing-here")
        assert status == 404


async def test_127_0_0_1_inside_is_not_this_hosts_loopback(serve: Serve) -> None:
    server = await serve("127.0.0.1")
    url = f"http://127.0.0.1:{server.port}/echo"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 201  # the server is there for this host
    with test_host() as host, pytest.raises(ConnectionError, match="refused"):
        await asyncio.to_thread(host.http, "GET", url, timeout_s=10)


async def test_a_process_inside_serves_the_host_and_ends_with_it(tmp_path: Path) -> None:
    with test_host() as host:
        web_server = host.popen(
            [sys.executable, "-m", "http.server", "--bind", "0.0.0.0", "8000"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Its own loopback answers once the server is up.
        await asyncio.to_thread(_wait_until_answers, host, "http://127.0.0.1:8000/")
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://{host.ns_ip}:8000/") as response,
        ):
            assert response.status == 200
    assert web_server.returncode is not None
    assert _gone(host)


def _wait_until_answers(host: NetnsHost, url: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            status, _, _ = host.http("GET", url, timeout_s=10)
        except ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
        else:
            assert status == 200
            return


def test_the_namespace_and_its_veth_are_removed_even_when_the_test_fails() -> None:
    with pytest.raises(RuntimeError, match="the test failed"), test_host() as host:
        assert not _gone(host)
        sleeper = host.popen(["sleep", "600"])
        raise RuntimeError("the test failed")
    assert sleeper.returncode is not None
    assert _gone(host)


def test_live_hosts_get_their_own_names_and_subnets() -> None:
    with test_host() as one, test_host() as two:
        assert one.name != two.name and one.host_veth != two.host_veth
        assert len({one.host_ip, one.ns_ip, two.host_ip, two.ns_ip}) == 4
        inside = one.run(["ip", "-o", "addr", "show", "dev", "eth0"], capture_output=True)
        assert f"inet {one.ns_ip}/30".encode() in inside.stdout
    assert _gone(one) and _gone(two)


async def test_https_from_inside_trusts_only_the_certificate_it_is_given(
    serve: Serve, tmp_path: Path
) -> None:
    with test_host() as host:
        cert, key = tls.self_signed(tmp_path, names=[host.host_ip])
        server = await serve(host.host_ip, tls.server_context(cert, key))
        url = f"https://{host.host_ip}:{server.port}/echo"
        status, _, _ = await asyncio.to_thread(host.http, "GET", url, cafile=cert)
        assert status == 201
        status, _, _ = await asyncio.to_thread(host.http, "GET", url, insecure=True)
        assert status == 201
        with pytest.raises(ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await asyncio.to_thread(host.http, "GET", url)
