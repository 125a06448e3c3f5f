"""Runs one leased job: the runtime under its timeout, output upload, then finish or release."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import quote

from asphalt import log
from asphalt.config import WorkerConfig
from asphalt.model.env_allow import allowed
from asphalt.model.records import JobInput
from asphalt.model.usage import MAX_CPU_S, MAX_MEMORY, Usage
from asphalt.protocol import EndState, Finish, Lease, fit_applied
from asphalt.worker import artifacts
from asphalt.worker.client import MasterClient, MasterError, Stale, UnknownWorker, Unreachable
from asphalt.worker.masking import Masker
from asphalt.worker.outputs import OutputsError, parse_outputs
from asphalt.worker.runtimes.base import JobSpec, Meter, Runtime, RuntimeFailure
from asphalt.worker.runtimes.outputs_file import OutputsFile
from asphalt.worker.runtimes.workdirs import WorkDirs
from asphalt.worker.uploader import Uploader

_log = log.get("asphalt.runner")
R = TypeVar("R")
BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)
ENV_URL = "ASPHALT_URL"  # how this worker reaches its master: a job can call its API there
# How a job is asked to stop early, and what the master is told it ended as.
STOPS = {
    "timed_out": "timed_out",
    "cancelled": "cancelled",
    "forgotten": "cancelled",  # the master gave it up; it will refuse the report anyway
    "released": "released",  # the worker is stopping: hand it back to run elsewhere
}


def backoff(attempt: int) -> float:
    return BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]


@dataclass(frozen=True, slots=True)
class Ended:
    """How a job attempt ended, as its finish tells it."""

    state: EndState | Literal["released"]
    status: int | None = None
    reason: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    usage: Usage | None = None


def swarmer_address(
    env: Mapping[str, str], secrets: Mapping[str, str], base: str
) -> dict[str, str]:
    """For a job of the master's Swarmer API: SWARMER_ADDRESS, where Swarmer's in-container
    client posts its result, as Swarmer set it: the master's /result/ID, with this attempt's
    job token in its query (the client sends no header; the token is good only to report for
    this job while it runs). A secret: masked in output, kept off command lines."""
    job, token = env.get("SWARMER_JOB_ID"), secrets.get("ASPHALT_JOB_TOKEN")
    if not job or not token:
        return {}
    return {"SWARMER_ADDRESS": f"{base.rstrip('/')}/result/{quote(job, safe='')}?token={token}"}


def _usage(meter: Meter) -> Usage:
    """What the runtime measured, as the finish carries it (within its bounds)."""
    cpu = None if meter.cpu_s is None else min(max(meter.cpu_s, 0.0), MAX_CPU_S)
    peak = None if meter.peak_memory is None else min(max(meter.peak_memory, 0), MAX_MEMORY)
    return Usage(cpu_s=cpu, peak_memory=peak, measured=meter.measured[:200])


def _artifact_dirs(private: Path, job: JobInput) -> artifacts.ArtifactDirs:
    wanted = {"logs": job.logs_dir, "results": job.results_dir}
    try:
        return artifacts.ArtifactDirs.make(private, wanted, host=job.runtime == "host")
    except OSError as e:
        raise RuntimeFailure(f"cannot make the job's artifact directories: {e}") from e


def _with_outputs(ended: Ended, outputs: OutputsFile, masker: Masker) -> Ended:
    """The end with what the job wrote to $ASPHALT_OUTPUTS, its secrets masked. A file that
    cannot be used fails a job that succeeded, and adds nothing to one that did not."""
    try:
        return replace(ended, outputs=parse_outputs(outputs.read(), masker.text))
    except OutputsError as e:
        return (
            replace(ended, state="failed", reason=str(e)) if ended.state == "succeeded" else ended
        )


@dataclass(slots=True)
class RunningJob:
    lease: Lease
    task: asyncio.Task[int] | None = None
    stop_as: str | None = None  # a key of STOPS once asked to stop
    applied: dict[str, Any] | None = None  # what its runtime applied, told with the finish
    started_at: float = field(default_factory=time.time)

    def stop(self, why: str) -> None:
        if self.task is not None and self.stop_as is None:
            self.stop_as = why
            self.task.cancel()
            _log.info("job_stopping", job=self.lease.job, why=why)


class Runner:
    def __init__(self, config: WorkerConfig, client: MasterClient, runtimes: dict[str, Runtime]):
        self.config = config
        self.client = client
        self.runtimes = runtimes
        # Private directories for the jobs' outputs files, beside their working directories
        # (a host runtime's reap removes what a dead run left of both).
        self._dirs = WorkDirs(config.work_dir)

    async def close(self) -> None:
        """Wait for the outputs directories of ended jobs to be removed."""
        await self._dirs.close()

    async def run(
        self, worker: str, entry: RunningJob, want_next: Callable[[], bool]
    ) -> Lease | None:
        """Run the job and report its end; return the next job, if the master sent one."""
        lease = entry.lease
        _log.debug("job_started", job=lease.job, attempt=lease.attempt, runtime=lease.spec.runtime)
        up = Uploader(
            self.client,
            worker,
            lease.job,
            lease.attempt,
            flush_bytes=self.config.flush_bytes,
            buffer_cap=self.config.buffer_cap,
        )
        pump = asyncio.create_task(up.pump(self.config.flush_interval_s))
        host = self._from_host(lease)
        # Values from the worker's environment are masked like secrets: they may be credentials.
        masker = Masker(up.write, [*lease.secrets.values(), *host.values()])
        try:
            end = await self._execute(worker, entry, masker, host)
            await masker.flush()
            state, status, reason = end.state, end.status, masker.text(end.reason)
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        ended = time.time()
        await self._deliver(up)
        following = None
        if state == "released":
            await self.hand_back(worker, lease)
        else:
            fin = Finish(
                attempt=lease.attempt,
                state=state,
                status=status,
                reason=reason,
                started_at=entry.started_at,
                ended_at=ended,
                next=want_next(),
                applied=entry.applied,
                outputs=end.outputs,
                usage=end.usage,
            )
            # A retry after a lost answer asks again, and the master sends the same job again.
            following = await self._call(lambda: self.client.finish(worker, lease.job, fin), lease)
        duration_s = round(ended - entry.started_at, 3)
        # One line per job only when it went wrong; -log-level debug shows them all.
        (_log.debug if state == "succeeded" else _log.info)(
            "job_finished", job=lease.job, state=state, status=status, duration_s=duration_s
        )
        return following

    async def hand_back(self, worker: str, lease: Lease) -> None:
        """Give a job back to the master unrun (or stopped), to run elsewhere."""
        await self._call(lambda: self.client.release(worker, lease.job, lease.attempt), lease)

    def _from_host(self, lease: Lease) -> dict[str, str]:
        """The worker's variables the job asks for that this worker allows (the master leases
        it only where all are; one that is not set is not there)."""
        return {
            name: os.environ[name]
            for name in lease.spec.env_from_host
            if name in os.environ and allowed(name, self.config.env_allow)
        }

    async def _execute(
        self, worker: str, entry: RunningJob, masker: Masker, host: dict[str, str]
    ) -> Ended:
        lease = entry.lease
        job = lease.spec
        runtime = self.runtimes.get(job.runtime)
        if runtime is None:
            return Ended("failed", reason=f"this worker has no {job.runtime} runtime")
        base = self.client.base_url
        given = {**lease.secrets, **swarmer_address(job.env, lease.secrets, base)}
        spec = JobSpec(  # the attempt as its runtime sees it: the job, in its environment
            job_id=lease.job,
            attempt=lease.attempt,
            action=job.action,
            container=job.container,
            env={**host, **job.env, **lease.env, **given, ENV_URL: base},
            secret_names=(*given, *host),
            worker_id=worker,
            limits=job.limits,
            types=job.types,
        )
        entry.applied = fit_applied(runtime.applied(spec))
        try:
            async with self._dirs.fresh(spec) as private:  # for its outputs file, not its cwd
                outputs = OutputsFile.create(private)
                dirs = _artifact_dirs(private, job)
                meter = Meter()
                spec = replace(
                    spec,
                    meter=meter,
                    outputs=outputs,
                    env={**spec.env, **dirs.env()},
                    mounts={} if job.runtime == "host" else dirs.mounts(),
                )
                ended = await self._wait(runtime, spec, entry, masker)
                if ended.state == "released":
                    return ended
                ended = replace(ended, usage=_usage(meter))
                if dirs.on_host:  # whatever its end; kept here until the master has them
                    await artifacts.deliver(self.client, worker, lease.job, lease.attempt, dirs)
                return _with_outputs(ended, outputs, masker)
        except RuntimeFailure as e:  # no place for its outputs file: it never ran
            return Ended("failed", reason=e.reason)

    async def _wait(
        self, runtime: Runtime, spec: JobSpec, entry: RunningJob, masker: Masker
    ) -> Ended:
        """Run the job in its runtime until it ends, runs over its timeout, or is stopped."""
        lease = entry.lease
        running = runtime.run(spec, masker.write, grace_s=self.config.grace_s)
        entry.task = asyncio.create_task(running)
        try:
            done, _ = await asyncio.wait({entry.task}, timeout=lease.spec.timeout)
        except asyncio.CancelledError:  # the worker is forced to stop: stop the job with it
            entry.task.cancel()
            await asyncio.wait({entry.task})
            raise
        if not done:
            entry.stop("timed_out")
        try:
            status = await entry.task
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            if entry.stop_as == "timed_out":
                timeout = lease.spec.timeout
                return Ended("timed_out", reason=f"ran over its timeout of {timeout:g} s")
            if entry.stop_as == "released":
                return Ended("released")
            return Ended("cancelled", reason="cancelled by request")
        except RuntimeFailure as e:
            return Ended("failed", reason=e.reason)
        except Exception as e:  # a bug or a surprise from a runtime ends this job, not the worker
            _log.exception("job_crashed", job=lease.job)
            return Ended("failed", reason=f"the worker could not run it: {e!r}")
        return Ended("succeeded" if status == 0 else "failed", status)

    async def _deliver(self, up: Uploader) -> None:
        """Send the rest of the output; keep trying while the master is away."""
        attempt = 0
        while not await up.flush() and not up.stale:
            await asyncio.sleep(backoff(attempt))
            attempt += 1

    async def _call(self, send: Callable[[], Awaitable[R]], lease: Lease) -> R | None:
        """Report the end (or the release) until the master takes it; keep it while it is away."""
        attempt = 0
        while True:
            try:
                return await send()
            except (Stale, UnknownWorker) as e:
                _log.warning("report_refused", job=lease.job, error=str(e))
                return None
            except Unreachable as e:
                _log.warning("report_failed", job=lease.job, error=str(e), retry_s=backoff(attempt))
                await asyncio.sleep(backoff(attempt))
                attempt += 1
            except MasterError as e:
                _log.error("report_rejected", job=lease.job, error=str(e))
                return None
