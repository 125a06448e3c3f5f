"""Swarmer's API in Asphalt's terms: the bodies its clients send, a Swarmer job as kept beside its
task, what a task's in-container client reported, and the status document (what `/status`
answers and the callback carries). Pure.

A Swarmer job is one task of the `swarmer` project whose jobs are its Swarmer tasks, each named
by its `task_name`; a task runs the job's image with its `task_args` as the argv after the
image's entrypoint."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from asphalt import wire
from asphalt.model.bodies import HookUrl, Image
from asphalt.model.records import Job, JobState
from asphalt.wire import Body, Meta, Record

MAX_TASKS = 1000  # a task's jobs at most (model/graph.py)
# The end of each stream a document carries per task, and of all its tasks' streams together;
# the job's page and /jobs/{id}/output have all that is kept.
STREAM_CAP = 1 << 20
DOCUMENT_CAP = 16 << 20
MIN_STREAM = 4 << 10
TRIMMED = "[asphalt: {dropped} before this not shown; the job's page has them]\n"
# A Swarmer task's name is a job's name in Asphalt: these, so that it can be one.
TASK_NAME = r"^[A-Za-z0-9_-]{1,64}\Z"
Arg = Annotated[str, Meta(max_length=65536)]

HINTS = {
    "image_name": 'must be an image name such as "alpine:3"',
    "callback_url": "must be an http:// or https:// URL that takes the results as a POST",
    "tasks": 'must be a list of tasks, e.g. [{"task_name": "one", "task_args": ["a", "b"]}]',
    "task_name": "must be 1-64 letters, digits, '_' or '-' (it names the task's job in Asphalt)",
    "task_args": 'must be a list of strings, e.g. ["--size", "3"] (the argv after the image\'s '
    "entrypoint)",
    "task_status": "must be the task's exit status, a whole number (within 32 bits)",
    "task_result": 'must be {"stdout": "...", "stderr": "..."}',
    "stdout": "must be the text the task wrote to stdout",
    "stderr": "must be the text the task wrote to stderr",
}


class TaskBody(Body, frozen=True, kw_only=True):
    task_name: Annotated[str, Meta(pattern=TASK_NAME)]
    task_args: Annotated[list[Arg], Meta(max_length=4096)] = []


class SubmitBody(Body, frozen=True, kw_only=True):
    """POST /submit: the job, with its tasks (the newer form) or without (the older two-step
    form, whose tasks come with POST /submit/{id}/tasks). Each task is read as a TaskBody,
    so that an error names it (`tasks.2.task_name`)."""

    image_name: Image
    callback_url: HookUrl
    tasks: Annotated[list[Any], Meta(max_length=MAX_TASKS)] | None = None


class TasksBody(Body, frozen=True, kw_only=True):
    tasks: Annotated[list[Any], Meta(min_length=1, max_length=MAX_TASKS)]


class Streams(Body, frozen=True, kw_only=True):
    stdout: str | None = None
    stderr: str | None = None


class ResultBody(Body, frozen=True, kw_only=True):
    """POST /result/{id}: what Swarmer's in-container client reports of its task."""

    task_name: Annotated[str, Meta(pattern=TASK_NAME)]
    task_status: Annotated[int, Meta(ge=-(2**31), le=2**31 - 1)]
    task_result: Streams


def read(data: Any, kind: type[wire.T]) -> wire.T:
    return wire.read(data, kind, HINTS)


def tasks_of(given: list[Any]) -> list[TaskBody]:
    return [wire.read(task, TaskBody, HINTS, at=f"tasks.{i}") for i, task in enumerate(given)]


class SwarmerJob(Record, frozen=True, kw_only=True):
    """A Swarmer job, kept from its submit on (before its tasks come it has no task)."""

    id: str  # its task's id too
    project: str
    image: str
    callback_url: str
    created_at: float


class Reported(Record, frozen=True, kw_only=True):
    """What a task's in-container client said of it (POST /result/{id}), for one attempt."""

    status: int
    stdout: str | None
    stderr: str | None
    at: float


def args_of(job: Job) -> list[str]:
    action = job.spec.action
    return list(action) if isinstance(action, list) else [action]


def stream_cap(tasks: int) -> int:
    """How much of each stream a document of this many tasks carries."""
    return max(MIN_STREAM, min(STREAM_CAP, DOCUMENT_CAP // max(1, 2 * tasks)))


def _end(text: str | None, cap: int) -> str | None:
    if text is None or len(text) <= cap:
        return text
    return TRIMMED.format(dropped=f"{len(text) - cap} characters") + text[-cap:]


def tail(data: bytes, cap: int) -> str:
    """The end of a stream's bytes as text, at most `cap` bytes of it, saying what was left."""
    if len(data) <= cap:
        return data.decode("utf-8", "replace")
    end = data[-cap:].decode("utf-8", "replace")
    return TRIMMED.format(dropped=f"{len(data) - cap} bytes") + end


def entry(
    job: Job, stdout: str, stderr: str, reported: Reported | None, cap: int = STREAM_CAP
) -> dict[str, Any]:
    """One task of the document: its name, exit status (null until it ends), args and output
    (the end of each stream, at most `cap` characters); `state` too while the status is null
    (not ended yet, or ended without one). Once it has exited (not timed out, cancelled or
    lost), what its client reported, if it did, stands for its status and output."""
    ended = job.state.terminal
    status = job.status if ended else None
    result: dict[str, str | None] = {"stdout": stdout, "stderr": stderr}
    if reported is not None and job.state in (JobState.SUCCEEDED, JobState.FAILED):
        status = reported.status
        result = {"stdout": reported.stdout, "stderr": reported.stderr}
    found: dict[str, Any] = {
        "name": job.name,
        "status": status,
        "args": args_of(job),
        "result": {key: _end(text, cap) for key, text in result.items()},
    }
    if status is None:
        found["state"] = _state(job)
    return found


def _state(job: Job) -> str:
    if job.state is JobState.QUEUED and job.attempt == 0:
        return "queued"
    return str(job.state)


def document(record: SwarmerJob, entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What Swarmer's /status answered and its callback carried, with `tasks` as a real array."""
    return {
        "__image": record.image,
        "__callback_url": record.callback_url,
        "tasks": list(entries),
    }
