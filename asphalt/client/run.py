"""`asphalt run`: submit a task, show its output live as if it ran here (stdout to stdout,
stderr to stderr) and exit with its job's exit code; Ctrl-C cancels it on the master, a second
Ctrl-C detaches."""

from __future__ import annotations

import contextlib
import secrets
import sys
import threading
import time
from collections.abc import Iterator
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


@contextlib.contextmanager
def cancelled_early(api: Api, project: str, body: dict[str, Any]) -> Iterator[None]:
    """A Ctrl-C that comes before the output is followed (while the task is being made, or
    just after) still cancels it: the task's id is chosen here, so it is known either way."""
    body.setdefault("id", secrets.token_hex(6))
    try:
        yield
    except KeyboardInterrupt:
        print("\nasphalt: cancelling", file=sys.stderr)
        cancel = f"/projects/{quote(project)}/tasks/{quote(str(body['id']))}/cancel"
        with contextlib.suppress(CallFailed):  # not made after all, or ended meanwhile
            api.call("POST", cancel, {}, ok=(404, 409))
        raise


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


def _prefixed(api: Api, name: str, job_id: str, width: int, failed: list[str]) -> None:
    """A job's output (both streams) to stdout, each line prefixed by the job's name."""
    held = b""
    try:
        for chunk in api.stream(f"/jobs/{job_id}/output?follow=1"):
            *lines, held = (held + chunk).split(b"\n")
            _write_lines(name, width, lines)
        if held:
            _write_lines(name, width, [held])
    except CallFailed as e:
        failed.append(str(e))


_LOCK = threading.Lock()


def _write_lines(name: str, width: int, lines: list[bytes]) -> None:
    if not lines:
        return
    prefix = f"{name.ljust(width)} | ".encode()
    with _LOCK:
        sys.stdout.buffer.write(b"".join(prefix + line + b"\n" for line in lines))
        sys.stdout.buffer.flush()


def _progress(api: Api, job_id: str, stop: threading.Event) -> None:
    """While the job waits, say why on the terminal (queued, and the reason)."""
    said = ""
    while not stop.wait(1.0):
        try:
            job = api.call("GET", f"/jobs/{job_id}")
        except CallFailed:
            continue
        if job["state"] != "queued":
            break
        line = f"queued: {job.get('reason') or 'waiting for a worker'}"
        if line != said:
            sys.stderr.write(f"\r\033[Kasphalt: {line}")
            sys.stderr.flush()
            said = line
    if said:
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()


def follow_task(api: Api, project: str, task: dict[str, Any]) -> int:
    """Every job's output, prefixed by its name, until the task completes; 0 if it succeeded
    (130 if cancelled, else the first failed job's code)."""
    jobs = task["jobs"]
    width = max(len(name) for name in jobs)
    failed: list[str] = []
    copies = [
        threading.Thread(target=_prefixed, args=(api, n, j["id"], width, failed), daemon=True)
        for n, j in jobs.items()
    ]
    code = _wait(api, project, task["id"], next(iter(jobs.values()))["id"], copies, failed)
    if code is not None:
        return code
    while True:
        view = api.call("GET", f"/projects/{quote(project)}/tasks/{quote(task['id'])}")
        if view["status"] == "complete":
            break
        time.sleep(POLL_S)
    if view["outcome"] == "succeeded":
        return 0
    if view["outcome"] == "cancelled":
        return EXIT_CANCELLED
    ended = [exit_code(j) for j in view["jobs"].values() if j["state"] != "skipped"]
    return next((c for c in ended if c), 1)


def follow(api: Api, project: str, task_id: str, job_id: str) -> int:
    """Show the job's two streams until it ends; its exit code. Ctrl-C: cancel, then detach."""
    failed: list[str] = []
    copies = [
        threading.Thread(
            target=_copy, args=(api, job_id, name, out, failed), daemon=True, name=name
        )
        for name, out in (("stdout", sys.stdout.buffer), ("stderr", sys.stderr.buffer))
    ]
    code = _wait(api, project, task_id, job_id, copies, failed)
    if code is not None:
        return code
    while True:  # the output ends with the attempt; the job's end is stored by then
        job: dict[str, Any] = api.call("GET", f"/jobs/{job_id}")
        if job["state"] not in ("queued", "running"):  # a retry's attempts are waited for
            return exit_code(job)
        time.sleep(POLL_S)


def _wait(
    api: Api,
    project: str,
    task_id: str,
    job_id: str,
    copies: list[threading.Thread],
    failed: list[str],
) -> int | None:
    """Run the copies until they end; Ctrl-C cancels the task, a second detaches (the exit
    code then, else None)."""
    stop = threading.Event()
    if sys.stderr.isatty():
        threading.Thread(target=_progress, args=(api, job_id, stop), daemon=True).start()
    for copy in copies:
        copy.start()
    cancelled = False
    try:
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
                cancel = f"/projects/{quote(project)}/tasks/{quote(task_id)}/cancel"
                api.call("POST", cancel, {}, ok=(409,))  # 409: it ended meanwhile
    finally:
        stop.set()
    if failed:
        raise CallFailed(failed[0])
    return None
