"""Shared fixtures: the local Docker test image, and real masters served in-process."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from harness import CONFIG, Master, MasterFactory, free_port

from asphalt.master.app import build_app

ROOT = Path(__file__).resolve().parent.parent
TEST_IMAGE = "asphalt-test:busybox"


@pytest.fixture(scope="session")
def test_image() -> str:
    """The busybox image Docker tests run in, built from Debian's busybox-static if missing."""
    subprocess.run(["bash", str(ROOT / "scripts" / "build-test-image"), TEST_IMAGE], check=True)
    return TEST_IMAGE


@pytest.fixture(scope="session")
def swarm_network(test_image: str) -> Iterator[str]:
    """A single-node swarm on the test engine (made if it is in none, and left after, so the
    engine ends as it began) and an internal overlay network for the tests' services: no
    route out, as test containers have no network."""

    def docker(*args: str) -> str:
        done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr}"
        return done.stdout.strip()

    made = docker("info", "--format", "{{.Swarm.LocalNodeState}}") != "active"
    if made:
        listen = f"127.0.0.1:{free_port()}"
        docker("swarm", "init", "--advertise-addr", "127.0.0.1", "--listen-addr", listen)
    network = f"asphalt-test-{os.getpid()}"
    docker("network", "create", "--driver", "overlay", "--internal", network)
    try:
        yield network
    finally:
        for _ in range(20):  # the last services' endpoints can take a moment to go
            rm = subprocess.run(["docker", "network", "rm", network], capture_output=True)
            if rm.returncode == 0:
                break
            time.sleep(0.5)
        if made:
            docker("swarm", "leave", "--force")


@pytest.fixture
async def master(tmp_path: Path) -> AsyncIterator[MasterFactory]:
    servers: list[TestServer] = []
    session = aiohttp.ClientSession()

    async def start(**changes: Any) -> Master:
        config = replace(CONFIG, data_dir=tmp_path / f"data{len(servers)}", **changes)
        server = TestServer(build_app(config), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return Master(server, session, config.data_dir)

    yield start
    await session.close()
    for server in servers:
        await server.close()
