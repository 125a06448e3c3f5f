"""The one small interface every runtime (host, docker, singularity) implements, and what
they share: the pipe a job's output streams through, and what of the worker's environment a
job may get."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from asphalt.limits import NO_LIMITS, Limits
from asphalt.model.env_allow import OWN as _OWN
from asphalt.model.env_allow import allowed
from asphalt.protocol import STDERR, STDOUT

if TYPE_CHECKING:
    from .outputs_file import OutputsFile

# Called with each piece of output as the job produces it, and its stream (STDOUT or STDERR).
OutputSink = Callable[[bytes, int], Awaitable[None]]
T = TypeVar("T")

# Labels put on every container (and env put on every host process group) so a restarted
# worker can find what it left behind.
LABEL_JOB = "asphalt.job"
LABEL_ATTEMPT = "asphalt.attempt"
LABEL_WORKER = "asphalt.worker"

_READ_SIZE = 65536

# What every job gets from the worker's environment (a trailing * is a prefix): enough for a
# shell and the programs it runs to find commands, a home, the locale, the time zone and a
# scratch directory. The rest only by the worker's allow list.
BASIC_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_*", "TZ", "TMPDIR", "TERM")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ALLOW = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\*?")


@dataclass(slots=True)
class Meter:
    """What a runtime measured a job attempt use, filled in as it runs; None: not measured."""

    cpu_s: float | None = None  # user + system
    peak_memory: int | None = None  # bytes
    measured: str = ""  # how, or why not


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSpec:
    """What a runtime needs to run one attempt of one job."""

    job_id: str
    attempt: int
    action: str | list[str]  # a string runs as `sh -c ACTION`; a list is an argv
    container: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    worker_id: str = ""
    limits: Limits = NO_LIMITS  # the job's own; the worker's defaults fill in the rest
    secret_names: tuple[str, ...] = ()  # which of env are secrets: never put on a command line
    outputs: OutputsFile | None = None  # where $ASPHALT_OUTPUTS lands; None: the job gets none
    # Directories of this machine bound into the job's container, by the path inside it.
    mounts: Mapping[str, Path] = field(default_factory=dict)
    meter: Meter | None = None  # where the runtime says what the job used
    types: tuple[str, ...] = ()  # the job's types (the swarm runtime places by them)


class RuntimeFailure(Exception):
    """The runtime could not run the job (image not found, daemon down, bad command)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Runtime(Protocol):
    """Runs one job attempt and returns its exit code.

    Contract:
    - `run` streams stdout and stderr to `sink`, each piece with its stream, while the job
      runs, and returns the exit code (a process killed by signal N returns 128 + N).
    - If the awaiting task is cancelled (the agent does this on timeout and on cancel), `run`
      stops the job: SIGTERM, then SIGKILL after `grace_s`, cleans up (removes the container)
      and re-raises `asyncio.CancelledError`.
    - Anything that stops the job from running at all (missing image, daemon unreachable,
      executable not found) raises `RuntimeFailure` with a reason a person can read.
    - Nothing is left behind: no process group, no container, after `run` returns or raises;
      a job's working directory is removed in the background, and `close` waits for that.
    - With `spec.outputs`, the job's `$ASPHALT_OUTPUTS` names a file it may write, and once
      `run` returns what the job wrote there is in `spec.outputs` (a job stopped early may
      leave it as it was).
    """

    name: str

    async def available(self) -> bool:
        """Whether this runtime can run jobs on this machine right now."""
        ...

    async def run(self, spec: JobSpec, sink: OutputSink, *, grace_s: float) -> int:
        """Run the job to its end and return its exit code."""
        ...

    def applied(self, spec: JobSpec) -> dict[str, Any]:
        """What running `spec` here gives the job and holds it to, as JSON with camelCase keys.

        Pure: it says what `run` does with this spec (clean environment, hardening, limits),
        so the master can keep it with the job.
        """
        ...

    async def reap(self, worker_id: str) -> list[str]:
        """End what an earlier, dead run of worker `worker_id` left; return those job ids."""
        ...

    async def close(self) -> None:
        """Release what the runtime holds (connections to a daemon); called once, at stop."""
        ...


class OutputPipe:
    """A pipe that a job (or a thread) writes and the loop reads into a sink.

    Our own rather than asyncio's subprocess pipes: the loop must be able to stop reading and
    close its end even while a process that escaped the job still holds the write end. A full
    pipe blocks the writer, so a slow sink slows the job instead of filling memory.
    """

    def __init__(self, reader: asyncio.StreamReader, write_fd: int, stream: int) -> None:
        self._reader = reader
        self._waiting_since: float | None = None
        self._ended = False  # every writer has closed it
        self.write_fd = write_fd  # whoever is handed it closes it
        self.stream = stream  # what is written to it is the job's stdout, or its stderr

    async def copy_to(self, sink: OutputSink) -> None:
        """Hand what is written to sink, in pieces of up to 64 KiB, until all writers close."""
        while True:
            self._waiting_since = time.monotonic()
            chunk = await self._reader.read(_READ_SIZE)
            self._waiting_since = None
            if not chunk:
                self._ended = True
                return
            await sink(chunk, self.stream)

    def quiet_s(self) -> float:
        """How long copy_to has been waiting for output (0 while a sink has some; forever once
        the pipe has ended, so that another pipe's quiet decides)."""
        if self._ended:
            return math.inf
        return 0.0 if self._waiting_since is None else time.monotonic() - self._waiting_since


@contextlib.asynccontextmanager
async def output_pipes() -> AsyncIterator[tuple[OutputPipe, OutputPipe]]:
    """OutputPipes for a job's stdout and its stderr, their read ends closed on exit."""
    async with output_pipe(STDOUT) as out, output_pipe(STDERR) as err:
        yield out, err


async def copy_all(pipes: Sequence[OutputPipe], sink: OutputSink) -> None:
    """Copy every pipe to sink at once, until all of them are closed by their writers; a sink
    that fails stops every copy, and its error is raised as it was."""
    copies = [asyncio.ensure_future(pipe.copy_to(sink)) for pipe in pipes]
    try:
        await asyncio.wait(copies, return_when=asyncio.FIRST_EXCEPTION)
        for copy in copies:
            if copy.done():
                copy.result()
    finally:
        for copy in copies:
            copy.cancel()
        await asyncio.gather(*copies, return_exceptions=True)


def quiet_s(pipes: Sequence[OutputPipe]) -> float:
    """How long every pipe has been waiting for output."""
    return min(pipe.quiet_s() for pipe in pipes)


@contextlib.asynccontextmanager
async def output_pipe(stream: int = STDOUT) -> AsyncIterator[OutputPipe]:
    """An OutputPipe whose read end is closed on exit."""
    read_fd, write_fd = os.pipe()
    file = os.fdopen(read_fd, "rb", buffering=0)
    reader = asyncio.StreamReader(limit=_READ_SIZE)
    try:
        transport, _ = await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), file
        )
    except BaseException:
        file.close()
        os.close(write_fd)
        raise
    try:
        yield OutputPipe(reader, write_fd, stream)
    finally:
        transport.close()


def check_env_allow(allow: Iterable[str]) -> tuple[str, ...]:
    """The worker's allow list, checked: names (`CI`) or prefixes (`CI_*`), none ASPHALT_*."""
    checked = tuple(allow)
    for item in checked:
        if not _ALLOW.fullmatch(item):
            raise ValueError(f"cannot allow {item!r}: give a variable name (CI) or a prefix (CI_*)")
        if item.startswith(_OWN):
            raise ValueError(f"cannot allow {item!r}: the worker's own {_OWN}* never reach jobs")
    return checked


def worker_env(allow: Sequence[str]) -> dict[str, str]:
    """What a job gets from the worker's environment: BASIC_ENV and `allow`, never ASPHALT_*."""
    patterns = (*BASIC_ENV, *allow)
    return {name: value for name, value in os.environ.items() if allowed(name, patterns)}


def passed_env(given: Mapping[str, str], *overrides: Mapping[str, str]) -> list[str]:
    """The names in `given` (from the worker) that no later mapping (the job's env) overrides."""
    return sorted(set(given).difference(*overrides))


def probe_socket(path: str, timeout_s: float) -> None:
    """Fail fast when nothing listens on the socket (docker-py leaks its socket then)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(timeout_s)
        try:
            probe.connect(path)
        except OSError as e:
            raise RuntimeFailure(f"docker daemon unreachable: {path}: {e.strerror}") from e


def write_all(fd: int, data: bytes) -> None:
    """Write all of data to a blocking descriptor (a pipe's write end)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


async def settled(pending: asyncio.Future[T]) -> tuple[T | None, bool]:
    """What a shielded call left running gives (None if it failed), however often the caller is
    cancelled meanwhile (a forced stop cancels twice): the call's thread goes on, and what it
    made is still ours to clean up. Also whether a cancel came meanwhile, for the caller to
    raise once it has cleaned up."""
    cancelled = False
    while not pending.done():
        try:
            await asyncio.shield(pending)
        except asyncio.CancelledError:
            cancelled = True
    if pending.cancelled() or pending.exception() is not None:
        return None, cancelled
    return pending.result(), cancelled
