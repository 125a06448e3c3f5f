"""The docker runtime: one labelled container per job attempt (the SDK is engine.py's)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import threading
from typing import Any

from asphalt.limits import NO_LIMITS, Limits
from asphalt.protocol import STDERR, STDOUT
from asphalt.worker.outputs import ENV

from .base import (
    LABEL_ATTEMPT,
    LABEL_JOB,
    LABEL_WORKER,
    JobSpec,
    OutputSink,
    RuntimeFailure,
    copy_all,
    output_pipes,
    settled,
    write_all,
)
from .cgroups import CgroupSampler
from .engine import (
    APIError,
    CancellableStream,
    Client,
    Container,
    DockerException,
    Engine,
    ImageNotFound,
    LogConfig,
    Mount,
    NotFound,
)
from .host import job_env
from .outputs_file import IN_CONTAINER, OutputsFile, container_archive

# Every capability is dropped and these given back: what a shell or a build needs as root in
# its own container. docs/runtimes.md says what is left out of Docker's defaults and why.
CAP_ADD = (
    "CHOWN",  # give files to other users (package installs; tar extracting as root)
    "DAC_OVERRIDE",  # read and write files whatever their mode, as root expects to
    "FOWNER",  # chmod and touch files it does not own
    "FSETID",  # keep setgid bits on what it changes
    "KILL",  # signal its own processes that run as other users
    "SETGID",  # switch groups and users: apt drops to _apt; su, gosu, runuser
    "SETUID",
    "NET_BIND_SERVICE",  # listen on ports below 1024 (in its own network namespace)
)
DEFAULT_PIDS = 4096  # when neither job nor worker says: stops a fork bomb, not a parallel build
# The container's log on the daemon's disk: at most two files of this size, the older one
# dropped when the second is full. See docs/runtimes.md for what a job that prints more loses.
LOG_MAX_SIZE, LOG_MAX_FILES = "50m", 2
LOG_GAP_NOTE = b"\n[asphalt: the job printed more than Docker keeps and some was lost; its end:]\n"


class DockerRuntime:
    """Runs each job as `sh -c ACTION` (or an argv) in a fresh container, removed afterwards."""

    name = "docker"

    def __init__(
        self,
        *,
        network: str = "bridge",
        pull: bool = True,
        base_url: str | None = None,
        engine: Engine | None = None,  # shared with the swarm runtime; else one of its own
        limits: Limits = NO_LIMITS,  # the worker's defaults, for what a job does not set
        log_max_size: str = LOG_MAX_SIZE,
    ) -> None:
        self._network = network
        self._limits = limits
        self._log_max_size = log_max_size
        self._pull = pull
        self._engine = engine or Engine(base_url)
        self._call = self._engine.call

    async def available(self) -> bool:
        return await self._engine.answers()

    def applied(self, spec: JobSpec) -> dict[str, Any]:
        made = self._confinement(spec)
        nano_cpus = made["nano_cpus"]
        return {
            "runtime": "docker",
            "noNewPrivileges": "no-new-privileges" in made["security_opt"],
            "capDrop": made["cap_drop"],
            "capAdd": made["cap_add"],
            "init": made["init"],
            "privileged": made["privileged"],
            "pidsLimit": made["pids_limit"],
            "memory": made["mem_limit"],
            "cpus": nano_cpus / 1e9 if nano_cpus is not None else None,
            "logMaxSize": made["log_config"].config["max-size"],
            "logMaxFiles": int(made["log_config"].config["max-file"]),
            "network": made["network_mode"],
        }

    async def run(self, spec: JobSpec, sink: OutputSink, *, grace_s: float) -> int:
        image = spec.container
        if not image:
            raise RuntimeFailure("the docker runtime needs a container image")
        try:
            await self._call(lambda c: _find_image(c, image, pull=self._pull))
        except APIError as e:
            raise RuntimeFailure(f"image not found: {image}") from e
        confinement = self._confinement(spec)
        # Shielded: cancelled while the container is being made, the thread goes on making
        # it, and we wait for it so that we can remove it.
        starting = asyncio.ensure_future(self._call(lambda c: _start(c, spec, confinement)))
        container: Container | None = None
        copiers: list[_LogCopier] = []
        sampler: CgroupSampler | None = None
        try:
            container = running = await asyncio.shield(starting)
            if spec.meter is not None:
                pid = await self._call(lambda _: _pid(running))
                sampler = CgroupSampler(pid, spec.meter)
                sampler.start()
            async with output_pipes() as pipes:
                copiers = [_LogCopier(running, pipe.write_fd, pipe.stream) for pipe in pipes]
                await copy_all(pipes, sink)
            for copier in copiers:
                if copier.error is not None:
                    raise RuntimeFailure(f"cannot read the job's output: {copier.error}")
            status = int((await self._call(lambda _: running.wait()))["StatusCode"])
            if spec.outputs is not None:
                await asyncio.to_thread(_copy_outputs, running, spec.outputs)
            return status
        finally:
            for copier in copiers:
                copier.stop()  # before any await: its thread ends whatever happens next
            if sampler is not None:
                await sampler.stop()
            stopped = False
            if container is None:
                ended = await settled(starting)
                container, stopped = ended
            if container is not None:
                made = container
                disposing = asyncio.ensure_future(asyncio.to_thread(dispose, made, grace_s))
                stopped = (await settled(disposing))[1] or stopped
            for copier in copiers:
                await copier.join()
            if stopped:
                raise asyncio.CancelledError  # what came while it was cleaned up

    async def reap(self, worker_id: str) -> list[str]:
        """Remove the containers a previous run of this worker left; return their job ids."""
        if not worker_id:
            raise ValueError("reap needs a worker id")

        def reap_all(client: Client) -> list[str]:
            label = f"{LABEL_WORKER}={worker_id}"
            found = client.containers.list(all=True, filters={"label": label})
            for container in found:
                with contextlib.suppress(NotFound):
                    container.remove(force=True, v=True)
            return [container.labels.get(LABEL_JOB, "") for container in found]

        return await self._call(reap_all)

    async def close(self) -> None:
        """Close the connections to the daemon."""
        await self._engine.close()

    def _confinement(self, spec: JobSpec) -> dict[str, Any]:
        """The create() arguments that confine the job's container: what `applied` reports."""
        limits = spec.limits.merged(self._limits)
        return {
            "network_mode": self._network,
            # An init as PID 1 passes SIGTERM on: a shell as PID 1 ignores it, and every
            # cancel would wait out the whole grace.
            "init": True,
            "privileged": False,
            "security_opt": ["no-new-privileges"],  # no setuid binary gains anything
            "cap_drop": ["ALL"],
            "cap_add": list(CAP_ADD),
            "pids_limit": limits.pids or DEFAULT_PIDS,
            "mem_limit": limits.memory,
            "memswap_limit": limits.memory,  # the same: no swap beyond the memory limit
            "nano_cpus": round(limits.cpus * 1e9) if limits.cpus is not None else None,
            "log_config": LogConfig(type="json-file", config=self._log_options()),
            # The job's artifact directories, fresh on this machine for each attempt.
            "mounts": [
                Mount(target=inside, source=str(path), type="bind", read_only=False)
                for inside, path in spec.mounts.items()
            ],
        }

    def _log_options(self) -> dict[str, str]:
        return {"max-size": self._log_max_size, "max-file": str(LOG_MAX_FILES)}


def _find_image(client: Client, image: str, *, pull: bool) -> None:
    try:
        client.images.get(image)
    except ImageNotFound:
        if not pull:
            raise
        client.images.pull(image)


def _start(client: Client, spec: JobSpec, confinement: dict[str, Any]) -> Container:
    command = ["sh", "-c", spec.action] if isinstance(spec.action, str) else list(spec.action)
    labels = {
        LABEL_JOB: spec.job_id,
        LABEL_ATTEMPT: str(spec.attempt),
        LABEL_WORKER: spec.worker_id,
    }
    outputs = spec.outputs.env(IN_CONTAINER) if spec.outputs is not None else {}
    try:
        container = client.containers.create(
            spec.container or "",
            command,
            environment={**spec.env, **job_env(spec), **outputs},
            labels=labels,
            tty=False,
            stdin_open=False,
            **confinement,
        )
        try:
            if outputs:  # before the job runs: its image may run as any user
                container.put_archive("/", container_archive())
            container.start()
        except BaseException:
            with contextlib.suppress(DockerException, OSError):
                container.remove(force=True, v=True)
            raise
    except APIError as e:
        raise RuntimeFailure(f"docker cannot run the container: {e.explanation}") from e
    return container


def _copy_outputs(container: Container, outputs: OutputsFile) -> None:
    """Bring the job's outputs file out of its ended container (a file it removed: none)."""
    try:
        archive, _ = container.get_archive(IN_CONTAINER, chunk_size=65536)
        outputs.copy_archive(archive)
    except NotFound:
        pass
    except (DockerException, OSError) as e:
        why = e.explanation if isinstance(e, APIError) else e
        outputs.refuse(f"{ENV} could not be copied out of the container: {why}")


def _pid(container: Container) -> int:
    """The container's first process on this machine (0 if it has ended already)."""
    container.reload()
    return int(container.attrs.get("State", {}).get("Pid") or 0)


def dispose(container: Container, grace_s: float) -> None:
    """Stop (SIGTERM, SIGKILL after the grace) and remove; the stop is a no-op if it exited."""
    with contextlib.suppress(DockerException, OSError):
        container.stop(timeout=math.ceil(grace_s))  # whole seconds; never shorter than asked
    with contextlib.suppress(DockerException, OSError):
        container.remove(force=True, v=True)  # with the anonymous volumes its image declares


class _LogCopier:
    """Copies one stream of a container's output into an OutputPipe from a thread of its own.

    Not `to_thread`: a log stream lives as long as its job, and a few would take every
    thread of the default executor. The pipe gives back-pressure and the loop reads it as it
    reads a host job's output.
    """

    def __init__(self, container: Container, write_fd: int, stream: int) -> None:
        self._which = {"stdout": stream == STDOUT, "stderr": stream == STDERR}
        self.error: Exception | None = None
        self._done = asyncio.Event()
        self._lock = threading.Lock()
        self._stopped = False
        self._stream: CancellableStream[bytes] | None = None
        args = (container, write_fd, asyncio.get_running_loop())
        name = f"asphalt-logs-{container.short_id}-{stream}"
        threading.Thread(target=self._copy, args=args, name=name, daemon=True).start()

    def _copy(self, container: Container, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        try:
            followed = hashlib.sha1(usedforsecurity=False)
            seen = self._send(container.logs(stream=True, follow=True, **self._which), fd, followed)
            if not self._stopped:
                container.wait()
                # Docker 20.10 can end a follow early when the container exits while the
                # reader is behind, so the finished log is read again for what it missed.
                again = container.logs(stream=True, follow=False, **self._which)
                if not self._send_rest(again, fd, seen, followed.digest()):
                    # It no longer begins with what was seen: Docker dropped its start (the
                    # job printed more than it keeps), and a follow loses output where it
                    # does. What it kept is the job's end; the agent keeps head and tail.
                    write_all(fd, LOG_GAP_NOTE)
                    self._send(container.logs(stream=True, follow=False, **self._which), fd)
        except Exception as e:
            if not self._stopped:  # once stopped, a broken pipe is how the thread learns it
                self.error = e
        finally:
            self._use(None)
            os.close(fd)
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits for us
                loop.call_soon_threadsafe(self._done.set)

    def _send(self, stream: CancellableStream[bytes], fd: int, seen: Any = None) -> int:
        """Write a log stream to fd, adding it to the hash `seen`; return its length."""
        self._use(stream)
        length = 0
        for frame in stream:
            length += len(frame)
            if seen is not None:
                seen.update(frame)
            write_all(fd, frame)
        return length

    def _send_rest(
        self, stream: CancellableStream[bytes], fd: int, skip: int, digest: bytes
    ) -> bool:
        """Write a log stream but its first `skip` bytes to fd, if those hash to `digest`.

        Returns whether they did; if not, nothing was written.
        """
        self._use(stream)
        head = hashlib.sha1(usedforsecurity=False)
        read, checked = 0, skip == 0
        for frame in stream:
            if not checked:
                need = skip - read
                head.update(frame[:need])
                read += len(frame)
                if read < skip:
                    continue
                if head.digest() != digest:
                    return False
                checked, frame = True, frame[need:]
            write_all(fd, frame)
        return checked

    def _use(self, stream: CancellableStream[bytes] | None) -> None:
        """Close the current log stream; make `stream` the current one unless stopped."""
        with self._lock:
            closing = [self._stream, stream] if self._stopped else [self._stream]
            self._stream = None if self._stopped else stream
        for old in closing:
            if old is not None:
                with contextlib.suppress(DockerException, OSError):
                    old.close()  # also wakes the thread if it waits for output
                    # docker-py shuts its socket but leaves the response holding the socket's
                    # file, so the descriptor stays open until it is collected.
                    response = getattr(old, "_response", None)
                    if response is not None:
                        response.close()

    def stop(self) -> None:
        """Stop copying: the thread ends soon after, even if the container still runs."""
        self._stopped = True
        self._use(None)

    async def join(self) -> None:
        await self._done.wait()
