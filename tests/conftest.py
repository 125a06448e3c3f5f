"""Shared fixtures: the local Docker test image, and real masters served in-process."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from harness import CONFIG, Master, MasterFactory

from asphalt.master.app import build_app

ROOT = Path(__file__).resolve().parent.parent
TEST_IMAGE = "asphalt-test:busybox"


@pytest.fixture(scope="session")
def test_image() -> str:
    """The busybox image Docker tests run in, built from Debian's busybox-static if missing."""
    subprocess.run(["bash", str(ROOT / "scripts" / "build-test-image"), TEST_IMAGE], check=True)
    return TEST_IMAGE


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
