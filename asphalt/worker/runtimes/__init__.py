"""The runtimes a worker can run jobs in, and finding which ones this machine has."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from pathlib import Path

from asphalt.limits import NO_LIMITS, Limits
from asphalt.worker.runtimes.base import (
    LABEL_ATTEMPT,
    LABEL_JOB,
    LABEL_WORKER,
    JobSpec,
    OutputSink,
    Runtime,
    RuntimeFailure,
    check_env_allow,
)
from asphalt.worker.runtimes.docker import DockerRuntime
from asphalt.worker.runtimes.engine import Engine
from asphalt.worker.runtimes.host import HostRuntime
from asphalt.worker.runtimes.singularity import SingularityRuntime
from asphalt.worker.runtimes.swarm import SwarmRuntime

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
    "SwarmRuntime",
    "detect_runtimes",
]


async def detect_runtimes(
    *,
    docker_network: str,
    env_allow: Iterable[str] = (),
    work_root: Path | None = None,
    limits: Limits = NO_LIMITS,
    state_dir: Path | None = None,
    cgroups: bool = False,
    swarm_network: str | None = None,
    swarm_constraints: Mapping[str, tuple[str, ...]] | None = None,
) -> list[Runtime]:
    """Host always; docker when its daemon answers (and swarm when that daemon is a swarm
    manager); singularity when its binary is installed.

    `env_allow` (names, or prefixes ending in `*`) is what host and singularity jobs may get
    of the worker's environment beyond the basics; `work_root` holds their working
    directories (the temp dir when None); `limits` are the defaults for docker jobs;
    `state_dir` holds the images singularity pulls (singularity-cache/ in it); with `cgroups`,
    host and singularity jobs are measured in control groups of their own.
    Raises ValueError for an allow list that names the worker's own ASPHALT_* variables.
    """
    allow = check_env_allow(env_allow)
    engine = Engine()  # one client for docker and swarm jobs
    docker = DockerRuntime(network=docker_network, limits=limits, engine=engine)
    swarm = SwarmRuntime(
        engine=engine, network=swarm_network, constraints=swarm_constraints, limits=limits
    )
    cache = state_dir / "singularity-cache" if state_dir is not None else None
    singularity = SingularityRuntime(
        env_allow=allow, work_root=work_root, cache_dir=cache, cgroups=cgroups
    )
    has_docker, has_singularity = await asyncio.gather(docker.available(), singularity.available())
    found: list[Runtime] = [HostRuntime(env_allow=allow, work_root=work_root, cgroups=cgroups)]
    if has_docker:
        found.append(docker)
        if await swarm.available():
            found.append(swarm)
    else:
        await docker.close()
    if has_singularity:
        found.append(singularity)
    return found
