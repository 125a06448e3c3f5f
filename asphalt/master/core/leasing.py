"""Leases, as the workers see them: the long-poll that hands a job over, heartbeats that renew
and carry cancels back, output, finishes (fenced by attempt), hand-backs and expiry."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from asphalt import log
from asphalt.config import MasterConfig
from asphalt.errors import Conflict
from asphalt.master.core import reactions
from asphalt.master.core.dispatch import Dispatch
from asphalt.master.core.lifecycle import Lifecycle
from asphalt.master.core.queues import Waiter
from asphalt.master.core.signals import Signals
from asphalt.master.core.tasks import Tasks
from asphalt.master.store import Store
from asphalt.model.members import Worker
from asphalt.model.records import Job, JobState
from asphalt.protocol import Finish, Frame, Heartbeat, HeartbeatReply, Lease
from asphalt.wire import replace

_log = log.get("asphalt.scheduler")
_CHAINED_KEPT = 4096  # finishes whose chained lease can be sent again


class Leases:
    def __init__(
        self,
        store: Store,
        config: MasterConfig,
        lifecycle: Lifecycle,
        dispatch: Dispatch,
        tasks: Tasks,
        signals: Signals,
    ) -> None:
        self.store = store
        self.config = config
        self.lifecycle = lifecycle
        self.dispatch = dispatch
        self.tasks = tasks
        self.signals = signals
        self.now = dispatch.now
        self.now_m = dispatch.now_m
        self._chained: dict[tuple[str, int], str] = {}  # finished (job, attempt) -> next job
        self.job_token: Callable[[str, int], str] | None = (
            None  # a running attempt's own credential
        )

    async def lease(self, worker: Worker, connected: Callable[[], bool]) -> Lease | None:
        """Hand the worker a job, waiting up to the poll hold for one to arrive."""
        self.dispatch.registry.touch(worker.id, now=self.now(), now_m=self.now_m())
        if self.dispatch.closing:
            return None
        job = self.dispatch.queues.take(worker)
        if job is not None:
            return self.lease_message(self.dispatch.grant(job, worker))
        waiter = Waiter(worker, connected=connected)
        self.dispatch.queues.wait(waiter)
        try:
            await asyncio.wait({waiter.future}, timeout=self.config.poll_hold_s)
        finally:
            self.dispatch.queues.forget(waiter)
            if not waiter.future.done():
                waiter.future.cancel()
            elif not connected():  # leased just as the worker went away: run it elsewhere
                self._release(waiter.future.result())
        if waiter.future.cancelled():
            return None
        return self.lease_message(waiter.future.result())

    def lease_message(self, job: Job) -> Lease:
        jobs: dict[str, Job] = {}
        wanted = {*job.spec.needs, *(("main",) if job.name != "main" else ())}
        task = self.store.task(job.project, job.task) if wanted else None
        run = task.run_number(job.run) if task else None
        if run is not None:
            ids = {run.jobs[name]: name for name in wanted if name in run.jobs}
            jobs = {ids[j.id]: j for j in self.store.jobs(list(ids))}
        secrets = self.store.secrets(job.id) if job.spec.secrets else {}
        if self.job_token is not None:  # a secret, so that its worker masks it in output
            secrets["ASPHALT_JOB_TOKEN"] = self.job_token(job.id, job.attempt)
        env = reactions.environment(job, jobs)
        return Lease(job=job.id, attempt=job.attempt, spec=job.spec, env=env, secrets=secrets)

    def _release(self, job: Job) -> None:
        """Put back a job that was leased but never reached its worker."""
        fresh = self.store.job(job.id)
        if fresh is None or fresh.state is not JobState.RUNNING or fresh.attempt != job.attempt:
            return
        if fresh.cancel_requested:  # cancelled while it was being handed over
            self.tasks.end(
                fresh.to(JobState.CANCELLED, ended_at=self.now(), reason="cancelled by request")
            )
            return
        back = replace(fresh.requeued(), attempt=fresh.attempt - 1, history=fresh.history)
        self.lifecycle.commit(jobs=[back])
        self.dispatch.drop(fresh.id)
        self.dispatch.enqueue(back)

    def held(self, worker: Worker, job_id: str, attempt: int) -> Job:
        """The job, if this worker holds this attempt of it; else 409 (or 404)."""
        job = self.tasks.job(job_id)
        if job.worker != worker.id or job.attempt != attempt:
            raise Conflict(f"attempt {attempt} of job {job_id} is not leased to this worker")
        return job

    async def heartbeat(self, worker: Worker, beat: Heartbeat) -> HeartbeatReply:
        """Renew leases; hold the answer up to one heartbeat for a cancel to carry back."""
        now_m = self.now_m()
        touched = self.dispatch.registry.touch(worker.id, now=self.now(), now_m=now_m)
        if beat.draining and not touched.draining:
            touched = replace(touched, draining=True)
            self.dispatch.registry.update(touched)
            _log.info("worker_draining", worker=worker.id)
        self.store.save_worker(touched)
        renewed, stale = set(), []
        for job_id, attempt in beat.running:
            if self.dispatch.renew(job_id, worker.id, attempt):
                renewed.add(job_id)
            else:
                stale.append(job_id)
        # Forget is by job id: when the worker also runs the attempt this master holds (given to
        # it again while an older attempt still ran), forgetting the id would stop that one too.
        forget = sorted({job_id for job_id in stale if job_id not in renewed})
        cancel = self._cancels(worker)
        if not cancel and not forget:
            await self.signals.wait(f"worker:{worker.id}", self.config.heartbeat_s)
            cancel = self._cancels(worker)
        return HeartbeatReply(cancel=cancel, forget=forget)

    def _cancels(self, worker: Worker) -> list[str]:
        ids = sorted(self.dispatch.registry.running.get(worker.id, ()))
        return [j.id for j in self.store.jobs(ids) if j.cancel_requested]

    def output(
        self, worker: Worker, job_id: str, attempt: int, offset: int, frames: list[Frame]
    ) -> int:
        """Keep output pieces (stream, bytes) that begin at `offset`; the length received."""
        job = self.held(worker, job_id, attempt)
        if job.state is not JobState.RUNNING:
            raise Conflict(f"job {job_id} has ended; its output is closed")
        received = self.store.append_output(job_id, attempt, offset, frames, self.config.output_cap)
        self.signals.notify(f"job:{job_id}")
        return received

    def finish(self, worker: Worker, job_id: str, fin: Finish) -> Job:
        job = self.tasks.job(job_id)
        state = JobState(fin.state)
        held = job.worker == worker.id and job.attempt == fin.attempt
        if held and job.state.terminal and (job.state, job.status) == (state, fin.status):
            return job  # the same report again, after a lost answer
        if not held or job.state.terminal:
            self._record_late(job, worker, fin)
            raise Conflict(f"attempt {fin.attempt} of job {job_id} is not leased to this worker")
        ended = job.to(
            state,
            status=fin.status,
            reason=fin.reason,
            started_at=fin.started_at,
            ended_at=fin.ended_at,
            applied=fin.applied,
            outputs=fin.outputs,
            usage=fin.usage,
        )
        self.tasks.end(ended)
        return ended

    def next_for(self, worker: Worker, finished: str, attempt: int) -> Lease | None:
        """A job for the slot the finish of (finished, attempt) freed, if one is ready; never waits.

        The same finish sent again (its answer was lost) gets the same lease again, so the job
        handed over in the lost answer is not left leased to a worker that never heard of it.
        """
        again = self._still_leased(worker, self._chained.get((finished, attempt)))
        if again is not None:
            return self.lease_message(again)
        if self.dispatch.closing or worker.draining:
            return None
        found = self.dispatch.queues.take(worker)
        if found is None:
            return None
        leased = self.dispatch.grant(found, worker)
        self._chained[(finished, attempt)] = leased.id
        while len(self._chained) > _CHAINED_KEPT:
            del self._chained[next(iter(self._chained))]  # the oldest: its answer went long ago
        return self.lease_message(leased)

    def _still_leased(self, worker: Worker, job_id: str | None) -> Job | None:
        """The job, if it is running under a lease this worker holds."""
        held = self.dispatch.holder(job_id, worker.id) if job_id else None
        if job_id is None or held is None:
            return None
        job = self.store.job(job_id)
        if job is None or job.state is not JobState.RUNNING or job.attempt != held.attempt:
            return None
        return job

    def unsent(self, lease: Lease) -> None:
        """A lease whose answer could not be sent goes back to the queue, not counted as a try."""
        job = self.store.job(lease.job)
        if job is not None:
            self._release(job)

    def release(self, worker: Worker, job_id: str, attempt: int) -> Job:
        """A stopping worker hands a job back: it runs again elsewhere, not counted as a retry."""
        job = self.tasks.job(job_id)
        if job.worker != worker.id or job.attempt != attempt or job.state is not JobState.RUNNING:
            raise Conflict(f"attempt {attempt} of job {job_id} is not leased to this worker")
        _log.info("job_released", job=job.id, worker=worker.id, attempt=attempt)
        return self.hand_back(job, f"handed back by worker {worker.name} as it stopped")

    def hand_back(self, job: Job, why: str) -> Job:
        """Queue a running job again, its attempt kept as lost but no retry counted."""
        if job.cancel_requested:
            ended = job.to(JobState.CANCELLED, ended_at=self.now(), reason="cancelled by request")
            self.tasks.end(ended)
            return ended
        back = job.to(JobState.LOST, ended_at=self.now(), reason=why).requeued()
        self.lifecycle.commit(jobs=[back])
        self.dispatch.drop(job.id)
        self.dispatch.enqueue(back)
        return back

    def _record_late(self, job: Job, worker: Worker, fin: Finish) -> None:
        """Keep, beside the attempt it belongs to, a result that came after it was given up on."""
        note = f"{fin.state}" + ("" if fin.status is None else f" (exit {fin.status})")
        if job.attempt == fin.attempt and job.worker == worker.id:
            if job.reason and "later reported" in job.reason:
                return
            late = replace(
                job, reason=f"{job.reason or job.state}; its worker later reported {note}"
            )
        else:
            history = tuple(
                replace(a, late=note) if (a.attempt, a.worker) == (fin.attempt, worker.id) else a
                for a in job.history
            )
            if history == job.history:
                return
            late = replace(job, history=history)
        self.lifecycle.commit(jobs=[late])
        _log.warning("late_result_ignored", job=job.id, attempt=fin.attempt, worker=worker.id)

    def expire_leases(self) -> None:
        """End the jobs whose worker stopped renewing their lease."""
        for job_id, held in self.dispatch.expired():
            job = self.store.job(job_id)
            if job is None or job.state is not JobState.RUNNING:
                self.dispatch.drop(job_id)
                continue
            state = JobState.CANCELLED if job.cancel_requested else JobState.LOST
            why = f"worker {held.worker} stopped renewing its lease"
            self.tasks.end(job.to(state, ended_at=self.now(), reason=why))
