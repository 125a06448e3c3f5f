"""Where a ready job can run: why it waits, in words a person can act on, and the sweep that
fails a job no live worker can run once it has waited -unrunnable-after (while workers are
there and none fits it; with no live worker at all, jobs wait for one, never fail)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from asphalt import log
from asphalt.master.core.dispatch import Dispatch
from asphalt.master.core.queues import fits
from asphalt.model.env_allow import refused
from asphalt.model.members import Worker
from asphalt.model.records import Job, JobState

_log = log.get("asphalt.scheduler")


def placement_reason(job: Job, live: Sequence[Worker], dispatch: Dispatch) -> str:
    """Why a ready queued job is not running yet (it is not waiting out a retry's backoff)."""
    spec = job.spec
    if not live:
        return "no live worker; start one with: asphalt -master HOST:PORT"
    if spec.types and not any(set(spec.types) <= set(w.types) for w in live):
        return f"no live worker has types {', '.join(spec.types)}"
    if not spec.types and all(w.types and not w.untyped for w in live):
        return "every live worker has types and takes only jobs that ask for them (-untyped)"
    if not any(fits(job, w) for w in live):
        runnable = [w for w in live if spec.runtime in w.runtimes]
        if not runnable:
            return f"no live worker that fits it has the {spec.runtime} runtime"
        least = min((refused(spec.env_from_host, w.env_allow) for w in runnable), key=len)
        if not least:  # each has some of what it needs, none all of it
            return f"no live worker has both its types and the {spec.runtime} runtime"
        return f"no live worker lets through {', '.join(least)} of its env_from_host (-env-allow)"
    if not dispatch.may_start(job):
        running = dispatch.running_of.get(spec.template or "", 0)
        return f"template {spec.template}: {running} of {spec.max_running} running"
    return "waiting for a free slot"


class Unrunnable:
    """Fails the queued jobs that no live worker has been able to run for too long."""

    def __init__(
        self,
        dispatch: Dispatch,
        end: Callable[[Job], None],
        *,
        after_s: float,
        now: Callable[[], float],
        now_m: Callable[[], float],
    ) -> None:
        self.dispatch = dispatch
        self.end = end
        self.after_s = after_s
        self.now = now
        self.now_m = now_m
        self._since: dict[str, float] = {}  # job id -> when it was first seen unrunnable

    def sweep(self) -> None:
        now_m = self.now_m()
        live = self.dispatch.registry.live_workers(now_m)
        if not live:
            self._since.clear()  # waiting for any worker at all is not being unrunnable
            return
        runnable: dict[tuple[str, tuple[str, ...], tuple[str, ...]], bool] = {}
        seen: dict[str, float] = {}
        for job in list(self.dispatch.queues):
            spec = job.spec
            key = (spec.runtime, spec.types, spec.env_from_host)
            if key not in runnable:
                runnable[key] = any(fits(job, w) for w in live)
            if runnable[key]:
                continue
            since = seen[job.id] = self._since.get(job.id, now_m)
            if now_m - since >= self.after_s:
                why = placement_reason(job, live, self.dispatch)
                self.dispatch.withdraw(job.id)
                reason = f"no live worker could run it for {self.after_s:g} s: {why}"
                _log.warning("job_unrunnable", job=job.id, reason=why)
                self.end(job.to(JobState.FAILED, ended_at=self.now(), reason=reason))
                del seen[job.id]
        self._since = seen
