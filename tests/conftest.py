"""Shared fixtures: the local Docker test image."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_IMAGE = "asphalt-test:busybox"


@pytest.fixture(scope="session")
def test_image() -> str:
    """The busybox image Docker tests run in, built from Debian's busybox-static if missing."""
    subprocess.run(["bash", str(ROOT / "scripts" / "build-test-image"), TEST_IMAGE], check=True)
    return TEST_IMAGE
