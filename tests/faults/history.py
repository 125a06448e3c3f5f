"""The one history checker every fault test ends with: what was acknowledged, and what is left.

- every acknowledged job has exactly one recorded end, or is still queued (never stuck running);
- no two attempts of a job overlapped in time, unless the earlier one was given up (lost);
- a job made no more attempts than its retries allow (plus reruns, which these tests don't do);
- no labelled container and no job process outlives its job;
- the store opens cleanly afterwards (the caller restarts the master and reads it all back).
"""

from __future__ import annotations

import itertools
import os
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from harness import Http

ENDS = {"succeeded", "failed", "timed_out", "cancelled", "lost", "skipped"}


def _t(stamp: str | None) -> float | None:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() if stamp else None


def job_processes(ids: set[str]) -> list[int]:
    """Processes on this machine that carry one of these jobs' ASPHALT_JOB_ID."""
    marks = {f"ASPHALT_JOB_ID={i}".encode() for i in ids}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and marks & set(env):
            found.append(int(entry.name))
    return found


def job_containers(ids: set[str]) -> list[str]:
    """Containers (running or not) labelled with one of these jobs."""
    out = subprocess.run(
        ["docker", "ps", "-a", "--format", '{{.ID}} {{.Label "asphalt.job"}}'],
        capture_output=True,
        text=True,
        check=True,
    )
    return [
        line.split()[0]
        for line in out.stdout.splitlines()
        if line.split()[1:] and line.split()[1] in ids
    ]


def check(
    http: Http, acknowledged: dict[str, list[str]], *, allow_queued: bool = False
) -> list[dict[str, Any]]:
    """Check every acknowledged task (project -> task ids); returns the jobs seen."""
    jobs: list[dict[str, Any]] = []
    for project, tasks in acknowledged.items():
        for task_id in tasks:
            task = http.get(f"/projects/{project}/tasks/{task_id}")
            jobs += task["jobs"].values()
    for job in jobs:
        state = job["state"]
        assert state != "running", f"job {job['id']} is stuck running"
        assert state in ENDS or (allow_queued and state == "queued"), job
        attempts = job.get("attempts", [])
        # Attempts handed back, and up to LOST_RETRIES lost with their worker, use no retry.
        lost = min(
            LOST_RETRIES, sum(1 for a in attempts if a["state"] == "lost" and not _handed_back(a))
        )
        again = sum(1 for a in attempts if _handed_back(a)) + lost
        assert job["attempt"] <= job["retries"] + 1 + again, job
        spans = [(a["startedAt"], a["endedAt"], a["state"]) for a in attempts]
        spans.append((job["startedAt"], job["endedAt"], state))
        for (_, end1, state1), (start2, _, _) in itertools.pairwise(spans):
            if state1 != "lost" and end1 and start2:
                assert _t(end1) <= _t(start2) + 0.001, f"attempts overlap in {job['id']}"  # type: ignore[operator]
    ids = {job["id"] for job in jobs}
    assert job_containers(ids) == [], "a container outlived its job"
    assert job_processes(ids) == [], "a job process outlived its job"
    return jobs


LOST_RETRIES = 2  # the master's -lost-retries default


def _handed_back(attempt: dict[str, Any]) -> bool:
    return "handed back" in (attempt.get("reason") or "")
