"""The runtimes a worker can run jobs in, and finding which ones this machine has."""

from __future__ import annotations

import asyncio

from asphalt.worker.runtimes.base import (
    LABEL_ATTEMPT,
    LABEL_JOB,
    LABEL_WORKER,
    JobSpec,
    OutputSink,
    Runtime,
    RuntimeFailure,
)
from asphalt.worker.runtimes.docker import DockerRuntime
from asphalt.worker.runtimes.host import HostRuntime
from asphalt.worker.runtimes.singularity import SingularityRuntime

__all__ = [
    "LABEL_ATTEMPT",
    "LABEL_JOB",
    "LABEL_WORKER",
    "DockerRuntime",
    "HostRuntime",
    "JobSpec",
    "OutputSink",
    "Runtime",
    "RuntimeFailure",
    "SingularityRuntime",
    "detect_runtimes",
]


async def detect_runtimes(*, docker_network: str) -> list[Runtime]:
    """Host always; docker when its daemon answers; singularity when its binary is installed."""
    docker = DockerRuntime(network=docker_network)
    singularity = SingularityRuntime()
    has_docker, has_singularity = await asyncio.gather(docker.available(), singularity.available())
    found: list[Runtime] = [HostRuntime()]
    if has_docker:
        found.append(docker)
    else:
        await docker.close()
    if has_singularity:
        found.append(singularity)
    return found
