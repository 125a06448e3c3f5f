"""The one small interface every runtime (host, docker, singularity) implements."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

# Called with each piece of output as the job produces it; stdout and stderr are merged.
OutputSink = Callable[[bytes], Awaitable[None]]

# Labels put on every container (and env put on every host process group) so a restarted
# worker can find what it left behind.
LABEL_JOB = "asphalt.job"
LABEL_ATTEMPT = "asphalt.attempt"
LABEL_WORKER = "asphalt.worker"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSpec:
    """What a runtime needs to run one attempt of one job."""

    job_id: str
    attempt: int
    action: str | list[str]  # a string runs as `sh -c ACTION`; a list is an argv
    container: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    worker_id: str = ""


class RuntimeFailure(Exception):
    """The runtime could not run the job (image not found, daemon down, bad command)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Runtime(Protocol):
    """Runs one job attempt and returns its exit code.

    Contract:
    - `run` streams merged stdout/stderr to `sink` while the job runs and returns the exit
      code (a process killed by signal N returns 128 + N).
    - If the awaiting task is cancelled (the agent does this on timeout and on cancel), `run`
      stops the job: SIGTERM, then SIGKILL after `grace_s`, cleans up (removes the container)
      and re-raises `asyncio.CancelledError`.
    - Anything that stops the job from running at all (missing image, daemon unreachable,
      executable not found) raises `RuntimeFailure` with a reason a person can read.
    - Nothing is left behind: no process group, no container, after `run` returns or raises.
    """

    name: str

    async def available(self) -> bool:
        """Whether this runtime can run jobs on this machine right now."""
        ...

    async def run(self, spec: JobSpec, sink: OutputSink, *, grace_s: float) -> int:
        """Run the job to its end and return its exit code."""
        ...

    async def reap(self, worker_id: str) -> list[str]:
        """End what an earlier, dead run of worker `worker_id` left; return those job ids."""
        ...

    async def close(self) -> None:
        """Release what the runtime holds (connections to a daemon); called once, at stop."""
        ...
