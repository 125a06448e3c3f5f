"""The worker agent: registers, long-polls for jobs, runs them in slots, heartbeats, drains."""

from __future__ import annotations

import asyncio
import contextlib

from asphalt import __version__, log
from asphalt.config import WorkerConfig
from asphalt.errors import Unauthorized
from asphalt.protocol import PROTOCOL, Lease, Registration
from asphalt.worker import leftovers
from asphalt.worker.client import MasterClient, MasterError, Refused, UnknownWorker
from asphalt.worker.runner import Runner, RunningJob, backoff
from asphalt.worker.runtimes.base import Runtime

_log = log.get("asphalt.agent")


class Agent:
    def __init__(self, config: WorkerConfig, runtimes: list[Runtime], client: MasterClient) -> None:
        self.config = config
        self.runtimes = {r.name: r for r in runtimes}
        self.client = client
        self.worker_id = ""
        self.heartbeat_s = 10.0
        self._runner = Runner(config, client, self.runtimes)
        self._slots = asyncio.Semaphore(config.slots)
        self._running: dict[tuple[str, int], RunningJob] = {}  # by (job, attempt)
        self._registered = asyncio.Event()
        self._draining = asyncio.Event()
        self._job_ended = asyncio.Event()
        self._claims: list[leftovers.Claim] = []

    def drain(self) -> None:
        """Stop taking jobs; finish what runs for up to `drain_s`, then hand the rest back."""
        self._draining.set()

    async def run(self) -> None:
        """Work until drained (or cancelled); then leave the master if it can be reached.

        A master that refuses this worker's credential (revoked, or a wrong join token) ends
        the run at once, its jobs stopped: it raises Unauthorized with the master's words.
        """
        claims: list[leftovers.Claim] = []
        self._claims = claims
        await leftovers.reap(self.config.state_dir, list(self.runtimes.values()))
        try:
            async with asyncio.TaskGroup() as group:
                await self._register()
                beats = group.create_task(self._heartbeats(), name="heartbeats")
                await self._poll(group)
                await self._finish_or_hand_back()
                beats.cancel()
        except ExceptionGroup as errors:
            refused = errors.subgroup(Refused)
            if refused is None:
                raise
            self.worker_id = ""  # its credential is dead: there is nobody to deregister
            message = str(refused.exceptions[0])
            _log.error("worker_refused", error=message)
            raise Unauthorized(message) from None
        finally:
            if self.worker_id:
                with contextlib.suppress(MasterError):
                    await asyncio.shield(self.client.deregister(self.worker_id))
                _log.info("worker_stopped", worker=self.worker_id)
            try:
                await self._runner.close()  # its jobs' outputs directories are gone
            finally:
                for claim in claims:
                    claim.release()

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
            protocol=PROTOCOL,
            env_allow=self.config.env_allow,
        )
        attempt = 0
        while True:
            try:
                welcome = await self.client.register(reg)
                break
            except Refused:
                raise
            except MasterError as e:
                url = self.client.base_url
                _log.warning("register_failed", master=url, error=str(e), retry_s=backoff(attempt))
                with contextlib.suppress(TimeoutError):  # a stop while it waits ends the wait
                    await asyncio.wait_for(self._draining.wait(), backoff(attempt))
                if self._draining.is_set():
                    return  # stopped before it ever joined: nothing to hand back
                attempt += 1
        self.worker_id = welcome.worker
        self._claims.append(leftovers.Claim(self.config.state_dir, self.worker_id))
        self.heartbeat_s = welcome.heartbeat_s
        self.client.poll_hold_s = welcome.poll_hold_s
        self._registered.set()
        log.bind(worker=self.worker_id)
        _log.info("worker_registered", worker=self.worker_id, runtimes=list(self.runtimes))

    async def _poll(self, group: asyncio.TaskGroup) -> None:
        """Keep one long-poll open while a slot is free, until the worker drains."""
        failures = 0
        draining = asyncio.create_task(self._draining.wait())
        polling: asyncio.Task[Lease | None] | None = None
        try:
            while not self._draining.is_set():
                await self._slots.acquire()
                polling = asyncio.create_task(self.client.lease(self.worker_id))
                await asyncio.wait({polling, draining}, return_when=asyncio.FIRST_COMPLETED)
                if not polling.done():  # draining: a job leased just now is lost with the poll
                    polling.cancel()
                    self._slots.release()
                    break
                try:
                    lease = polling.result()
                    failures = 0
                except UnknownWorker:
                    self._slots.release()
                    await self._register()
                    continue
                except Refused:
                    self._slots.release()
                    raise
                except MasterError as e:
                    self._slots.release()
                    _log.warning("lease_failed", error=str(e), retry_s=backoff(failures))
                    await asyncio.sleep(backoff(failures))
                    failures += 1
                    continue
                if lease is None:
                    self._slots.release()
                    continue
                self._running[(lease.job, lease.attempt)] = RunningJob(lease)
                group.create_task(self._run(lease), name=f"job-{lease.job}")
        finally:
            draining.cancel()
            if polling is not None:  # stopped by another task's error: this poll's is moot
                polling.cancel()
                with contextlib.suppress(asyncio.CancelledError, MasterError):
                    await polling

    async def _run(self, lease: Lease) -> None:
        """Run jobs in one slot: this one, then each the master sends back with a finish."""
        following: Lease | None = lease
        try:
            while following is not None:
                current = following
                key = (current.job, current.attempt)
                entry = self._running.setdefault(key, RunningJob(current))
                try:
                    following = await self._runner.run(self.worker_id, entry, self._taking)
                finally:
                    self._running.pop(key, None)
                if following is not None and not self._taking():
                    await self._runner.hand_back(self.worker_id, following)  # began to drain
                    following = None
        finally:
            self._slots.release()
            self._job_ended.set()

    def _taking(self) -> bool:
        return not self._draining.is_set()

    async def _finish_or_hand_back(self) -> None:
        """Let running jobs end for up to `drain_s`; then stop the rest and hand them back."""
        _log.info("worker_draining", running=len(self._running), drain_s=self.config.drain_s)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.drain_s):
                await self._all_ended()
        for entry in list(self._running.values()):
            entry.stop("released")
        await self._all_ended()

    async def _all_ended(self) -> None:
        while self._running:
            self._job_ended.clear()
            await self._job_ended.wait()

    async def _heartbeats(self) -> None:
        failures = 0
        while True:
            await self._registered.wait()
            running = [
                (job, entry.lease.attempt)
                for (job, _), entry in self._running.items()
                if entry.stop_as is None
            ]
            draining = self._draining.is_set()
            try:
                reply = await self.client.heartbeat(
                    self.worker_id, running, self.heartbeat_s, draining=draining
                )
                failures = 0
            except UnknownWorker:
                await asyncio.sleep(1.0)
                continue
            except Refused:
                raise
            except MasterError as e:
                failures += 1
                _log.warning("heartbeat_failed", error=str(e))
                await asyncio.sleep(backoff(failures))
                continue
            for job in reply.cancel:
                self._stop(job, "cancelled")
            for job in reply.forget:
                self._stop(job, "forgotten")
            if reply.cancel or reply.forget:
                await asyncio.sleep(0.05)  # give the stops a moment before beating again

    def _stop(self, job_id: str, why: str) -> None:
        for (job, _), entry in list(self._running.items()):
            if job == job_id:
                entry.stop(why)
