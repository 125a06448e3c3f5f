"""The worker agent: registers, long-polls for jobs, runs them in slots, heartbeats, reports."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from asphalt import __version__, log
from asphalt.config import WorkerConfig
from asphalt.protocol import Finish, Lease, Registration
from asphalt.worker.client import MasterClient, MasterError, Stale, UnknownWorker, Unreachable
from asphalt.worker.runtimes.base import JobSpec, Runtime, RuntimeFailure
from asphalt.worker.uploader import Uploader

_log = log.get("asphalt.agent")
BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)


@dataclass(slots=True)
class _Running:
    lease: Lease
    task: asyncio.Task[int] | None = None
    stop_as: str | None = None  # "cancelled" or "forgotten" once asked to stop
    started_at: float = field(default_factory=time.time)


class Agent:
    def __init__(self, config: WorkerConfig, runtimes: list[Runtime], client: MasterClient) -> None:
        self.config = config
        self.runtimes = {r.name: r for r in runtimes}
        self.client = client
        self.worker_id = ""
        self.heartbeat_s = 10.0
        self._slots = asyncio.Semaphore(config.slots)
        self._running: dict[str, _Running] = {}
        self._registered = asyncio.Event()

    async def run(self) -> None:
        """Work until cancelled; then leave the master cleanly if it can be reached."""
        try:
            async with asyncio.TaskGroup() as group:
                await self._register()
                group.create_task(self._heartbeats(), name="heartbeats")
                await self._poll(group)
        finally:
            if self.worker_id:
                with contextlib.suppress(MasterError):
                    await asyncio.shield(self.client.deregister(self.worker_id))

    async def _register(self) -> None:
        self._registered.clear()
        reg = Registration(
            name=self.config.name,
            host=self.config.host,
            types=self.config.types,
            runtimes=tuple(self.runtimes),
            slots=self.config.slots,
            version=__version__,
            untyped=self.config.untyped,
        )
        for attempt in range(1_000_000):
            try:
                welcome = await self.client.register(reg)
                break
            except MasterError as e:
                delay = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
                _log.warning(
                    "register_failed", master=self.client.base_url, error=str(e), retry_s=delay
                )
                await asyncio.sleep(delay)
        self.worker_id = welcome.worker
        self.heartbeat_s = welcome.heartbeat_s
        self.client.poll_hold_s = welcome.poll_hold_s
        self._registered.set()
        log.bind(worker=self.worker_id)
        _log.info("worker_registered", worker=self.worker_id, runtimes=list(self.runtimes))

    async def _poll(self, group: asyncio.TaskGroup) -> None:
        failures = 0
        while True:
            await self._slots.acquire()
            try:
                lease = await self.client.lease(self.worker_id)
                failures = 0
            except UnknownWorker:
                self._slots.release()
                await self._register()
                continue
            except MasterError as e:
                self._slots.release()
                delay = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
                failures += 1
                _log.warning("lease_failed", error=str(e), retry_s=delay)
                await asyncio.sleep(delay)
                continue
            if lease is None:
                self._slots.release()
                continue
            self._running[lease.job] = _Running(lease)
            group.create_task(self._run_job(lease), name=f"job-{lease.job}")

    async def _run_job(self, lease: Lease) -> None:
        worker, entry = self.worker_id, self._running[lease.job]
        _log.info("job_started", job=lease.job, attempt=lease.attempt, runtime=lease.runtime)
        up = Uploader(
            self.client, worker, lease.job, lease.attempt, flush_bytes=self.config.flush_bytes
        )
        pump = asyncio.create_task(up.pump(self.config.flush_interval_s))
        try:
            state, status, reason = await self._execute(entry, up)
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            self._slots.release()
        ended = time.time()
        await self._deliver(up)
        fin = Finish(
            attempt=lease.attempt,
            state=state,
            status=status,
            reason=reason,
            started_at=entry.started_at,
            ended_at=ended,
        )
        await self._report(worker, lease.job, fin)
        self._running.pop(lease.job, None)
        _log.info(
            "job_finished",
            job=lease.job,
            state=state,
            status=status,
            duration_s=round(ended - entry.started_at, 3),
        )

    async def _execute(self, entry: _Running, up: Uploader) -> tuple[str, int | None, str | None]:
        lease = entry.lease
        runtime = self.runtimes.get(lease.runtime)
        if runtime is None:
            return "failed", None, f"this worker has no {lease.runtime} runtime"
        spec = JobSpec(
            job_id=lease.job,
            attempt=lease.attempt,
            action=lease.action,
            container=lease.container,
            env=lease.env,
            worker_id=self.worker_id,
        )
        entry.task = asyncio.create_task(runtime.run(spec, up.write, grace_s=self.config.grace_s))
        try:
            done, _ = await asyncio.wait({entry.task}, timeout=lease.timeout)
        except asyncio.CancelledError:  # the worker is stopping: stop the job with it
            entry.task.cancel()
            await asyncio.wait({entry.task})
            raise
        if not done:
            entry.stop_as = entry.stop_as or "timed_out"
            entry.task.cancel()
        try:
            status = await entry.task
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            if entry.stop_as == "timed_out":
                return "timed_out", None, f"ran over its timeout of {lease.timeout:g} s"
            return "cancelled", None, "cancelled by request"
        except RuntimeFailure as e:
            return "failed", None, e.reason
        except Exception as e:  # a bug or a surprise from a runtime ends this job, not the worker
            _log.exception("job_crashed", job=lease.job)
            return "failed", None, f"the worker could not run it: {e!r}"
        return ("succeeded" if status == 0 else "failed"), status, None

    async def _deliver(self, up: Uploader) -> None:
        """Send the rest of the output; keep trying while the master is away."""
        for attempt in range(1_000_000):
            if await up.flush():
                return
            if up.stale:
                return
            await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])

    async def _report(self, worker: str, job: str, fin: Finish) -> None:
        for attempt in range(1_000_000):
            try:
                await self.client.finish(worker, job, fin)
                return
            except (Stale, UnknownWorker) as e:
                _log.warning("finish_refused", job=job, error=str(e))
                return
            except Unreachable as e:
                delay = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
                _log.warning("finish_failed", job=job, error=str(e), retry_s=delay)
                await asyncio.sleep(delay)
            except MasterError as e:
                _log.error("finish_rejected", job=job, error=str(e))
                return

    def _stop(self, job_id: str, why: str) -> None:
        entry = self._running.get(job_id)
        if entry is not None and entry.task is not None and entry.stop_as is None:
            entry.stop_as = why
            entry.task.cancel()
            _log.info("job_stopping", job=job_id, why=why)

    async def _heartbeats(self) -> None:
        failures = 0
        while True:
            await self._registered.wait()
            running = [
                (job, entry.lease.attempt)
                for job, entry in self._running.items()
                if entry.stop_as is None
            ]
            try:
                reply = await self.client.heartbeat(self.worker_id, running, self.heartbeat_s)
                failures = 0
            except UnknownWorker:
                await asyncio.sleep(1.0)
                continue
            except MasterError as e:
                failures += 1
                _log.warning("heartbeat_failed", error=str(e))
                await asyncio.sleep(BACKOFF_S[min(failures, len(BACKOFF_S) - 1)])
                continue
            for job in reply.cancel:
                self._stop(job, "cancelled")
            for job in reply.forget:
                self._stop(job, "forgotten")
            if reply.cancel or reply.forget:
                await asyncio.sleep(0.05)  # give the stops a moment before beating again
