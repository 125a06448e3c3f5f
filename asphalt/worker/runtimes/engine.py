"""The Docker engine as the docker and swarm runtimes share it: one client, made on first use and
called from threads, with a dead daemon told as a RuntimeFailure (the only importer of `docker`;
the SDK's types the two runtimes use are named here)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from docker.models.services import Service
from docker.types import (
    CancellableStream,
    LogConfig,
    Mount,
    Resources,
    RestartPolicy,
    ServiceMode,
)

from .base import RuntimeFailure, probe_socket

__all__ = [
    "APIError",
    "CancellableStream",
    "Client",
    "Container",
    "DockerException",
    "Engine",
    "ImageNotFound",
    "LogConfig",
    "Mount",
    "NotFound",
    "Resources",
    "RestartPolicy",
    "Service",
    "ServiceMode",
    "make_service",
    "remove_service",
    "tasks_of",
]

T = TypeVar("T")
Client = docker.DockerClient

_DEFAULT_HOST = "unix:///var/run/docker.sock"
_TIMEOUT_S = 60  # for each call to the daemon; log streams have none
PING_TIMEOUT_S = 3.0
_POOL = 32  # connections: one per docker job's log stream, plus short calls


class Engine:
    """A Docker engine's client (DOCKER_HOST and DOCKER_TLS_* as the CLI reads them, unless
    `base_url` is given)."""

    def __init__(self, base_url: str | None = None) -> None:
        self._base_url = base_url
        self._client: Client | None = None
        self._lock = threading.Lock()

    async def call(self, fn: Callable[[Client], T]) -> T:
        """Run a blocking SDK call in a thread; a dead daemon becomes a RuntimeFailure."""
        try:
            return await asyncio.to_thread(lambda: fn(self.connect()))
        except APIError:
            raise  # the daemon answered; the caller knows what the refusal means
        except (DockerException, OSError) as e:
            raise RuntimeFailure(f"docker daemon unreachable: {e}") from e

    async def answers(self) -> bool:
        """Whether the daemon answers a ping now."""
        try:
            await asyncio.wait_for(self.call(lambda c: c.ping()), PING_TIMEOUT_S)
        except (RuntimeFailure, DockerException, TimeoutError):
            return False
        return True

    def connect(self) -> Client:
        # Made in a thread on first use: the client asks the daemon for its API version.
        with self._lock:
            if self._client is None:
                url = self._base_url or os.environ.get("DOCKER_HOST") or _DEFAULT_HOST
                if url.startswith("unix://"):
                    probe_socket(url.removeprefix("unix://"), PING_TIMEOUT_S)
                if self._base_url is None:  # from_env also reads the DOCKER_TLS_* settings
                    self._client = docker.from_env(timeout=_TIMEOUT_S, max_pool_size=_POOL)
                else:
                    self._client = docker.DockerClient(url, timeout=_TIMEOUT_S, max_pool_size=_POOL)
            return self._client

    async def close(self) -> None:
        """Close the connections to the daemon."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)


# The SDK's services are untyped: these say what their calls give.


def make_service(client: Client, image: str, **kwargs: Any) -> Service:
    made: Service = client.services.create(image, **kwargs)  # type: ignore[no-untyped-call]
    return made


def tasks_of(service: Service) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = service.tasks()  # type: ignore[no-untyped-call]
    return found


def remove_service(service: Service) -> None:
    service.remove()  # type: ignore[no-untyped-call]
