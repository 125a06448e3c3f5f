"""The docker runtime: one labelled container per job attempt (the only importer of `docker`)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from docker.types import CancellableStream

from .base import LABEL_ATTEMPT, LABEL_JOB, LABEL_WORKER, JobSpec, OutputSink, RuntimeFailure
from .host import job_env

T = TypeVar("T")

_API_TIMEOUT_S = 60.0
_PING_TIMEOUT_S = 3.0
_POOL_SIZE = 32  # one connection per running job's log stream, plus short calls
_BUFFER_MAX = 4 * 65536  # output read from the daemon but not yet taken by the loop
_BATCH = 65536


class DockerRuntime:
    """Runs each job as `sh -c ACTION` (or an argv) in a fresh container, removed afterwards."""

    name = "docker"

    def __init__(
        self, *, network: str = "bridge", pull: bool = True, base_url: str | None = None
    ) -> None:
        self._network = network
        self._pull = pull
        self._base_url = base_url
        self._client: docker.DockerClient | None = None
        self._client_lock = threading.Lock()

    async def available(self) -> bool:
        try:
            await asyncio.wait_for(self._call(lambda c: c.ping()), _PING_TIMEOUT_S)
        except (RuntimeFailure, DockerException, TimeoutError):
            return False
        return True

    async def run(self, spec: JobSpec, sink: OutputSink, *, grace_s: float) -> int:
        image = spec.container
        if not image:
            raise RuntimeFailure("the docker runtime needs a container image")
        await self._ensure_image(image)
        # Shielded: if we are cancelled while the container is being made, the thread goes on
        # making it, and we must wait for it to be able to remove it.
        starting = asyncio.ensure_future(self._call(lambda c: _start(c, spec, self._network)))
        container: Container | None = None
        pump: _LogPump | None = None
        try:
            container = await asyncio.shield(starting)
            pump = _LogPump(container)
            return await pump.drain(sink)
        finally:
            if pump is not None:
                pump.stop()  # first, and without awaiting: its thread ends whatever happens next
            if container is None:
                with contextlib.suppress(Exception):
                    container = await starting
            if container is not None:
                await asyncio.to_thread(_dispose, container, grace_s)
            if pump is not None:
                await pump.join()

    async def reap(self, worker_id: str) -> list[str]:
        """Remove the containers a previous run of this worker left; return their job ids."""
        if not worker_id:
            raise ValueError("reap needs a worker id")

        def reap_all(client: docker.DockerClient) -> list[str]:
            label = f"{LABEL_WORKER}={worker_id}"
            jobs = []
            for container in client.containers.list(all=True, filters={"label": label}):
                jobs.append(container.labels.get(LABEL_JOB, ""))
                with contextlib.suppress(NotFound):
                    container.remove(force=True)
            return jobs

        return await self._call(reap_all)

    async def close(self) -> None:
        """Close the connections to the daemon."""
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)

    async def _ensure_image(self, image: str) -> None:
        try:
            await self._call(lambda c: c.images.get(image))
            return
        except ImageNotFound:
            pass
        except APIError as e:  # e.g. an invalid reference
            raise RuntimeFailure(f"image not found: {image}") from e
        if not self._pull:
            raise RuntimeFailure(f"image not found: {image}")
        try:
            await self._call(lambda c: c.images.pull(image))
        except APIError as e:
            raise RuntimeFailure(f"image not found: {image}") from e

    async def _call(self, fn: Callable[[docker.DockerClient], T]) -> T:
        """Run a blocking SDK call in a thread; a dead daemon becomes a RuntimeFailure."""
        try:
            return await asyncio.to_thread(lambda: fn(self._connect()))
        except APIError:
            raise  # the daemon answered; the caller knows what the refusal means
        except (DockerException, OSError) as e:
            raise RuntimeFailure(f"docker daemon unreachable: {e}") from e

    def _connect(self) -> docker.DockerClient:
        # Made in a thread on first use: the client asks the daemon for its API version.
        with self._client_lock:
            if self._client is None:
                if self._base_url is None:
                    self._client = docker.from_env(
                        timeout=int(_API_TIMEOUT_S), max_pool_size=_POOL_SIZE
                    )
                else:
                    self._client = docker.DockerClient(
                        base_url=self._base_url,
                        timeout=int(_API_TIMEOUT_S),
                        max_pool_size=_POOL_SIZE,
                    )
            return self._client


def _start(client: docker.DockerClient, spec: JobSpec, network: str) -> Container:
    command = ["sh", "-c", spec.action] if isinstance(spec.action, str) else list(spec.action)
    try:
        container = client.containers.create(
            spec.container or "",
            command,
            environment={**spec.env, **job_env(spec)},
            labels={
                LABEL_JOB: spec.job_id,
                LABEL_ATTEMPT: str(spec.attempt),
                LABEL_WORKER: spec.worker_id,
            },
            network_mode=network,
            # An init as PID 1 forwards SIGTERM: a shell as PID 1 would ignore it, and every
            # cancel would wait out the whole grace.
            init=True,
            tty=False,
            stdin_open=False,
        )
    except APIError as e:
        raise RuntimeFailure(f"docker cannot create the container: {e.explanation}") from e
    try:
        container.start()
    except BaseException as e:
        with contextlib.suppress(DockerException, OSError):
            container.remove(force=True)
        if isinstance(e, APIError):
            raise RuntimeFailure(f"docker cannot start the container: {e.explanation}") from e
        raise
    return container


def _dispose(container: Container, grace_s: float) -> None:
    """Stop (SIGTERM, SIGKILL after the grace) and remove; a no-op stop if it has exited."""
    with contextlib.suppress(DockerException, OSError):
        # Docker takes whole seconds; rounding up never shortens the grace.
        container.stop(timeout=math.ceil(grace_s))
    with contextlib.suppress(DockerException, OSError):
        container.remove(force=True)


@dataclass(frozen=True, slots=True)
class _End:
    status: int | None
    error: Exception | None


class _LogPump:
    """Carries a container's output, and then its exit status, from a thread to the loop.

    Its own thread, not `to_thread`: a stream lives as long as its job, and a few of them
    would take the default executor's every thread. Frames gather in one buffer that the loop
    takes whole, so a chatty job costs one wake-up per batch rather than per line; when the
    buffer is full the thread waits, so a slow sink slows the reader instead of filling memory.
    """

    def __init__(self, container: Container) -> None:
        self._loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()
        self._cond = threading.Condition()
        self._buffer = bytearray()
        self._end: _End | None = None
        self._stopped = False
        self._stream: CancellableStream[bytes] | None = None
        name = f"asphalt-logs-{container.short_id}"
        threading.Thread(target=self._feed, args=(container,), name=name, daemon=True).start()

    def _feed(self, container: Container) -> None:
        status: int | None = None
        error: Exception | None = None
        try:
            seen = self._send(container.logs(stream=True, follow=True), skip=0)
            if not self._stopped:
                status = int(container.wait()["StatusCode"])
                # Docker 20.10 can end a follow early when the container exits while the
                # reader is behind, so the finished log is read again for what it missed.
                self._send(container.logs(stream=True, follow=False), skip=seen)
        except Exception as e:
            error = e
        finally:
            with self._cond:
                self._close_stream()
                self._end = _End(status, error)
            self._loop.call_soon_threadsafe(self._ready.set)

    def _send(self, stream: CancellableStream[bytes], *, skip: int) -> int:
        """Buffer one log stream's frames but its first `skip` bytes; return the bytes seen."""
        with self._cond:
            self._close_stream()
            self._stream = stream
        seen = 0
        for frame in stream:
            seen += len(frame)
            if seen <= skip:
                continue
            with self._cond:
                self._cond.wait_for(lambda: self._stopped or len(self._buffer) < _BUFFER_MAX)
                if self._stopped:
                    break
                wake = not self._buffer
                self._buffer += frame[max(0, len(frame) - (seen - skip)) :]
            if wake:
                self._loop.call_soon_threadsafe(self._ready.set)
        return seen

    async def drain(self, sink: OutputSink) -> int:
        """Hand the output to sink in pieces of at most 64 KiB; return the exit status."""
        while True:
            data, end = await self._take()
            for at in range(0, len(data), _BATCH):
                await sink(data[at : at + _BATCH])
            if end is not None:
                if end.error is not None or end.status is None:
                    raise RuntimeFailure(f"lost track of the container: {end.error}")
                return end.status

    def stop(self) -> None:
        """Stop reading: the thread ends soon after, even if the container still runs."""
        with self._cond:
            self._stopped = True
            self._close_stream()  # wakes the thread if it waits for output
            self._cond.notify_all()  # and if it waits for room

    async def join(self) -> None:
        """Wait for the thread to end, dropping what it still carried."""
        while (await self._take())[1] is None:
            pass

    async def _take(self) -> tuple[bytes, _End | None]:
        await self._ready.wait()
        self._ready.clear()
        with self._cond:  # held only to swap the buffer
            data, self._buffer = bytes(self._buffer), bytearray()
            self._cond.notify_all()
            return data, self._end

    def _close_stream(self) -> None:
        # Called with the lock held, from either thread, at most once per stream.
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(DockerException, OSError):
                stream.close()
