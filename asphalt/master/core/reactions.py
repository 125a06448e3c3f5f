"""What a run does next when some of its jobs end: the jobs waiting on them made ready, or
skipped (and those waiting on a skipped job decided in turn), by the graph's rule."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from asphalt.model import graph
from asphalt.model.records import Job, JobState
from asphalt.wire import replace


def _pending(job: Job | None) -> bool:
    return job is not None and job.state is JobState.QUEUED and not job.ready


def advance(jobs: Mapping[str, Job], ended: Iterable[str], now: float) -> list[Job]:
    """The run's jobs that change because the jobs named `ended` ended (or were added with
    their needs already ended): each waiting job whose needs have all ended is made ready, or
    skipped with the reason naming the job that decided it, which decides its own waiters."""
    current = dict(jobs)
    needed_by: dict[str, list[str]] = {}
    for name, job in current.items():
        if _pending(job):
            for need in job.spec.needs:
                needed_by.setdefault(need, []).append(name)
    changed: dict[str, Job] = {}
    todo = list(ended)
    while todo:
        for name in needed_by.get(todo.pop(), ()):
            job = current[name]
            if not _pending(job):
                continue
            states = {need: current[need].state for need in job.spec.needs if need in current}
            if len(states) < len(job.spec.needs) or not all(s.terminal for s in states.values()):
                continue
            why = graph.decide(job.spec.node, {n: str(s) for n, s in states.items()})
            if why is None:
                current[name] = changed[name] = replace(job, ready=True)
            else:
                current[name] = changed[name] = job.to(JobState.SKIPPED, ended_at=now, reason=why)
                todo.append(name)
    return list(changed.values())


def starting(jobs: Mapping[str, Job]) -> list[str]:
    """The names of jobs whose needs have all ended already: what `advance` starts from for
    jobs just made (or made waiting again by a rerun)."""
    return [name for name, job in jobs.items() if job.state.terminal or not job.spec.needs]


def waiting_reason(job: Job, jobs: Mapping[str, Job] | None) -> str:
    """Why a job with needs is not ready yet, for people reading the task."""
    needs = job.spec.needs
    if jobs is not None:
        needs = tuple(n for n in needs if n in jobs and not jobs[n].state.terminal) or needs
    return f"waits for {', '.join(needs)} to end"


def environment(job: Job, jobs: Mapping[str, Job]) -> dict[str, str]:
    """The ASPHALT_* variables a job sees; a job with needs also sees how they ended
    (ASPHALT_NEEDS), and every job but main how main ended (ASPHALT_MAIN_*)."""
    env = {
        "ASPHALT_PROJECT_ID": job.project,
        "ASPHALT_TASK_ID": job.task,
        "ASPHALT_JOB_ID": job.id,
        "ASPHALT_JOB_NAME": job.name,
        "ASPHALT_RUN": str(job.run),
        "ASPHALT_ROLE": job.name,
        "ASPHALT_ATTEMPT": str(job.attempt),
    }
    main = jobs.get("main")
    if job.name != "main" and main is not None:
        env["ASPHALT_MAIN_STATE"] = str(main.state)
        env["ASPHALT_MAIN_STATUS"] = "" if main.status is None else str(main.status)
    if job.spec.needs:
        needs = {
            name: {"state": str(need.state), "status": need.status, "outputs": dict(need.outputs)}
            for name in job.spec.needs
            if (need := jobs.get(name)) is not None
        }
        env["ASPHALT_NEEDS"] = json.dumps(needs, separators=(",", ":"))
    return env
