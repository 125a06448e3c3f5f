"""The runtimes a worker can run jobs in, and finding which ones this machine has."""

from __future__ import annotations

from asphalt.worker.runtimes.base import JobSpec, OutputSink, Runtime, RuntimeFailure
from asphalt.worker.runtimes.docker import DockerRuntime
from asphalt.worker.runtimes.host import HostRuntime

__all__ = ["JobSpec", "OutputSink", "Runtime", "RuntimeFailure", "detect_runtimes"]


async def detect_runtimes(*, docker_network: str) -> list[Runtime]:
    """Host always; docker when its daemon answers."""
    found: list[Runtime] = [HostRuntime()]
    docker = DockerRuntime(network=docker_network)
    if await docker.available():
        found.append(docker)
    return found
