"""`asphalt run`: submit a task, show its output live as if it ran here (stdout to stdout,
stderr to stderr) and exit with its job's exit code; Ctrl-C cancels it on the master, a second
Ctrl-C detaches."""

from __future__ import annotations

import sys
import threading
import time
from typing import IO, Any
from urllib.parse import quote

from asphalt.client.api import Api, CallFailed

EXIT_TIMED_OUT = 124  # as timeout(1) says it
EXIT_CANCELLED = 130  # as a shell says a job stopped by Ctrl-C
POLL_S = 0.3


def ensure_project(api: Api, name: str) -> None:
    """The project, made on first use."""
    api.call("POST", "/", {"name": name}, ok=(409,))


def submit(api: Api, project: str, body: dict[str, Any]) -> dict[str, Any]:
    ensure_project(api, project)
    task: dict[str, Any] = api.call("POST", f"/projects/{quote(project)}", body)
    return task


def exit_code(job: dict[str, Any]) -> int:
    state, status = job.get("state"), job.get("status")
    if state == "succeeded":
        return 0
    if state == "timed_out":
        return EXIT_TIMED_OUT
    if state == "cancelled":
        return EXIT_CANCELLED
    return status if isinstance(status, int) and 0 < status < 256 else 1


def _copy(api: Api, job_id: str, stream: str, out: IO[bytes], failed: list[str]) -> None:
    try:
        for chunk in api.stream(f"/jobs/{job_id}/output?follow=1&stream={stream}"):
            out.write(chunk)
            out.flush()
    except CallFailed as e:
        failed.append(str(e))


def follow(api: Api, project: str, task_id: str, job_id: str) -> int:
    """Show the job's two streams until it ends; its exit code. Ctrl-C: cancel, then detach."""
    failed: list[str] = []
    copies = [
        threading.Thread(
            target=_copy, args=(api, job_id, name, out, failed), daemon=True, name=name
        )
        for name, out in (("stdout", sys.stdout.buffer), ("stderr", sys.stderr.buffer))
    ]
    for copy in copies:
        copy.start()
    cancelled = False
    while True:
        try:
            for copy in copies:
                while copy.is_alive():
                    copy.join(POLL_S)
            break
        except KeyboardInterrupt:
            if cancelled:
                print(
                    f"\nasphalt: detached; the job goes on. Follow it again with: "
                    f"asphalt logs -f {job_id}",
                    file=sys.stderr,
                )
                return EXIT_CANCELLED
            cancelled = True
            print("\nasphalt: cancelling (Ctrl-C again to detach)", file=sys.stderr)
            api.call("POST", f"/projects/{quote(project)}/tasks/{quote(task_id)}/cancel", {})
    if failed:
        raise CallFailed(failed[0])
    while True:  # the output ends with the attempt; the job's end is stored by then
        job: dict[str, Any] = api.call("GET", f"/jobs/{job_id}")
        if job["state"] not in ("queued", "running"):  # a retry's attempts are waited for
            return exit_code(job)
        time.sleep(POLL_S)
