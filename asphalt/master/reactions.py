"""What a run does next when one of its jobs ends: which reactions become ready or skipped."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from asphalt.model import Job, JobState, Role


def _pending(job: Job | None) -> bool:
    return job is not None and job.state is JobState.QUEUED and not job.ready


def advance(jobs: Mapping[Role, Job], ended: Job, now: float) -> list[Job]:
    """The run's jobs that change because `ended` ended: reactions made ready, or skipped.

    `success` follows a main that exited 0, `failure` any other end of main; `after` runs
    last, once main and the reaction chosen (if there is one) have ended.
    """
    changed: list[Job] = []

    def ready(role: Role) -> None:
        job = jobs.get(role)
        if job is not None and _pending(job):
            changed.append(replace(job, ready=True))

    def skip(role: Role, why: str) -> None:
        job = jobs.get(role)
        if job is not None and _pending(job):
            changed.append(job.to(JobState.SKIPPED, ended_at=now, reason=why))

    if ended.role is Role.MAIN:
        if ended.state is JobState.SUCCEEDED:
            chosen = Role.SUCCESS
            skip(Role.FAILURE, "main succeeded")
        else:
            chosen = Role.FAILURE
            skip(Role.SUCCESS, f"main ended {ended.state}")
        if _pending(jobs.get(chosen)):
            ready(chosen)
        else:
            ready(Role.AFTER)
    elif ended.role in (Role.SUCCESS, Role.FAILURE):
        ready(Role.AFTER)
    return changed


def waiting_reason(job: Job) -> str:
    """Why a reaction is not ready yet, for people reading the task."""
    if job.role is Role.AFTER:
        return "waits for main and its reaction to end"
    return "waits for main to end"


def environment(job: Job, main: Job | None) -> dict[str, str]:
    """The ASPHALT_* variables a job sees; reactions also see how main ended."""
    env = {
        "ASPHALT_PROJECT_ID": job.project,
        "ASPHALT_TASK_ID": job.task,
        "ASPHALT_JOB_ID": job.id,
        "ASPHALT_RUN": str(job.run),
        "ASPHALT_ROLE": str(job.role),
        "ASPHALT_ATTEMPT": str(job.attempt),
    }
    if job.role is not Role.MAIN and main is not None:
        env["ASPHALT_MAIN_STATE"] = str(main.state)
        env["ASPHALT_MAIN_STATUS"] = "" if main.status is None else str(main.status)
    return env
