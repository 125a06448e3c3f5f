"""Project, Task and Job records (msgspec Structs), their states and the transitions allowed
between them; pure."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from asphalt.limits import NO_LIMITS, Limits
from asphalt.model.graph import ROLES, Node, When, outcome
from asphalt.model.usage import Usage, bill
from asphalt.wire import Meta, Record, field, replace


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    LOST = "lost"
    SKIPPED = "skipped"

    @property
    def terminal(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING)


class Role(StrEnum):
    MAIN = "main"
    SUCCESS = "success"
    FAILURE = "failure"
    AFTER = "after"


class TaskStatus(StrEnum):
    WAITING = "waiting"
    RUNNING = "running"
    COMPLETE = "complete"


class Scope(StrEnum):
    """What a credential may do; each API scope includes the ones before it."""

    READ = "read"
    SUBMIT = "submit"
    ADMIN = "admin"
    JOIN = "join"  # the worker join token: registers workers, nothing else
    JOB = "job"  # a running job's token: reads its own task and adds jobs to it, nothing else


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


_ENDS = {
    JobState.SUCCEEDED,
    JobState.FAILED,
    JobState.TIMED_OUT,
    JobState.CANCELLED,
    JobState.LOST,
}
TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    # QUEUED -> FAILED: no live worker could run it for -unrunnable-after.
    JobState.QUEUED: frozenset(
        {JobState.RUNNING, JobState.CANCELLED, JobState.SKIPPED, JobState.FAILED}
    ),
    # RUNNING -> QUEUED is a lease that expired on a job that may be retried.
    JobState.RUNNING: frozenset(_ENDS | {JobState.QUEUED}),
    # Every end may be queued again by a rerun.
    **{end: frozenset({JobState.QUEUED}) for end in (*_ENDS, JobState.SKIPPED)},
}
FAILURES = frozenset({JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELLED, JobState.LOST})


MASK = "***"  # what stands for a secret's value wherever it would show


class TransitionError(Exception):
    """A job was asked to move to a state its current state does not allow."""


def check_transition(before: Job | None, after: Job) -> None:
    """Refuse a move the transition table does not allow; a new job starts queued (or skipped,
    added with its needs ended already)."""
    if before is None:
        if after.state not in (JobState.QUEUED, JobState.SKIPPED):
            raise TransitionError(f"job {after.id} cannot start {after.state}")
    elif before.state is not after.state and after.state not in TRANSITIONS[before.state]:
        raise TransitionError(f"job {after.id} cannot go from {before.state} to {after.state}")


def new_id(nbytes: int = 6) -> str:
    return secrets.token_hex(nbytes)


def rfc3339(ts: float | None) -> str | None:
    return None if ts is None else _rfc3339(ts)


@functools.lru_cache(maxsize=4096)  # views show the same few times over and over
def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Project(Record, frozen=True, kw_only=True):
    id: str
    name: str
    created_at: float
    keep_days: int | None = None  # its tasks' retention, over the master's -keep-days
    deleting: bool = False  # deleted while tasks of it ran: removed once the last one is
    callback_secret: str | None = None  # signs task callbacks that bring no secret; never shown

    def view(self) -> dict[str, Any]:
        view: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "createdAt": rfc3339(self.created_at),
        }
        if self.keep_days is not None:
            view["keepDays"] = self.keep_days
        if self.callback_secret is not None:
            view["callbackSecret"] = MASK
        return view


class JobInput(Record, frozen=True, kw_only=True):
    """A job as a user describes it, already validated."""

    action: str | list[str]
    container: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: Annotated[float, Meta(gt=0)] | None = None
    types: tuple[str, ...] = ()
    runtime: str = "host"
    # Attempts after the first when one fails, times out or is lost.
    retries: Annotated[int, Meta(ge=0)] = 0
    backoff: Annotated[float, Meta(ge=0)] = 10.0  # seconds before the first retry, doubled after
    # The names of its secrets; their values are stored apart and never shown (Store.secrets).
    secrets: tuple[str, ...] = ()
    limits: Limits = NO_LIMITS  # memory, CPUs and processes; a worker's defaults fill the rest
    # Its place in the task's graph: the jobs it waits for, and on what end of them it runs.
    needs: tuple[str, ...] = ()
    when: When = When.SUCCESS
    # The worker's variables it is given (only those the worker's -env-allow lets through).
    env_from_host: tuple[str, ...] = ()
    # Directories collected as its artifacts when it ends (docker, singularity: paths inside
    # the container; every runtime also says where they are in ASPHALT_LOGS_DIR and ...).
    logs_dir: str | None = None
    results_dir: str | None = None
    # Made from a template (model/templates.py): which version, the arguments it was given with
    # the defaults filled in, and how many jobs of that template may run at once.
    template: str | None = None
    template_version: int | None = None
    args: Mapping[str, Any] | None = None
    max_running: int | None = None

    @property
    def node(self) -> Node:
        return Node(needs=self.needs, when=self.when)


class Attempt(Record, frozen=True, kw_only=True):
    """What one earlier attempt of a job ended as; kept when the job runs again."""

    attempt: int
    state: JobState
    status: int | None
    worker: str | None
    started_at: float | None
    ended_at: float | None
    reason: str | None
    late: str | None = None  # what its worker reported after the attempt was given up on
    waited: float | None = None  # seconds it waited for a worker
    usage: Usage | None = None

    def view(self) -> dict[str, Any]:
        return {
            "lateResult": self.late,
            "attempt": self.attempt,
            "state": self.state,
            "status": self.status,
            "worker": self.worker,
            "startedAt": rfc3339(self.started_at),
            "endedAt": rfc3339(self.ended_at),
            "reason": self.reason,
            "bill": bill(
                self.usage, waited_s=self.waited, started=self.started_at, ended=self.ended_at
            ),
        }


class Job(Record, frozen=True, kw_only=True):
    id: str
    project: str
    task: str
    run: int
    name: str  # its name in the task's graph: main, success, failure, after, or any other
    spec: JobInput
    created_at: float
    state: JobState = JobState.QUEUED
    # A queued job is ready when it may be dispatched; a job with needs waits until they end.
    ready: bool = True
    status: int | None = None
    started_at: float | None = None
    ended_at: float | None = None
    worker: str | None = None
    attempt: int = 0
    reason: str | None = None
    cancel_requested: bool = False
    history: tuple[Attempt, ...] = ()
    retried: int = 0  # retries used since the job was created or rerun
    not_before: float | None = None  # a retry waits out its backoff until then (wall time)
    # What the worker applied to its last attempt (clean env, hardening, limits), as it said.
    applied: Mapping[str, Any] | None = None
    outputs: Mapping[str, str] = field(default_factory=dict)  # what it wrote to $ASPHALT_OUTPUTS
    lost: int = 0  # attempts lost with their worker and run again (-lost-retries), since created
    added: bool = False  # added while its run was going (POST .../jobs), not part of the task
    waited: float | None = None  # seconds this attempt waited for a worker once it was ready
    usage: Usage | None = None  # what its runtime measured this attempt use

    def to(self, state: JobState, **changes: Any) -> Self:
        """The job moved to `state` (the one door, lifecycle.py, checks the move on saving)."""
        return replace(self, state=state, **changes)

    def requeued(self, *, ready: bool = True) -> Self:
        """The job queued again for a new attempt, its last attempt kept in `history`."""
        history = self.history
        if self.attempt:
            history = (*history, self.last_attempt())
        return self.to(
            JobState.QUEUED,
            ready=ready,
            status=None,
            started_at=None,
            ended_at=None,
            worker=None,
            reason=None,
            cancel_requested=False,
            history=history,
            not_before=None,
            applied=None,
            outputs={},
            waited=None,
            usage=None,
        )

    def last_attempt(self) -> Attempt:
        return Attempt(
            attempt=self.attempt,
            state=self.state,
            status=self.status,
            worker=self.worker,
            started_at=self.started_at,
            ended_at=self.ended_at,
            reason=self.reason,
            waited=self.waited,
            usage=self.usage,
        )

    def bill(self) -> dict[str, Any]:
        return bill(self.usage, waited_s=self.waited, started=self.started_at, ended=self.ended_at)

    def view(self, *, output: str | None = None, reason: str | None = None) -> dict[str, Any]:
        spec = self.spec
        body: dict[str, Any] = {
            "id": self.id,
            "project": self.project,
            "task": self.task,
            "run": self.run,
            "name": self.name,
            "action": spec.action,
            "container": spec.container,
            "env": dict(spec.env),
            "timeout": spec.timeout,
            "types": list(spec.types),
            "runtime": spec.runtime,
            "state": self.state,
            "status": self.status,
            "startedAt": rfc3339(self.started_at),
            "endedAt": rfc3339(self.ended_at),
            "createdAt": rfc3339(self.created_at),
            "worker": self.worker,
            "attempt": self.attempt,
            "retries": spec.retries,
            "needs": list(spec.needs),
            "when": spec.when,
            "outputs": dict(self.outputs),
        }
        if self.name in ROLES:
            body["role"] = self.name
        if spec.retries:
            body["backoff"] = spec.backoff
        if spec.secrets:
            body["secrets"] = dict.fromkeys(spec.secrets, MASK)
        if spec.limits != NO_LIMITS:
            body["limits"] = spec.limits.view()
        if self.applied is not None:
            body["applied"] = dict(self.applied)
        if spec.template is not None:
            body["template"] = {"name": spec.template, "version": spec.template_version}
            body["args"] = dict(spec.args or {})
        if spec.env_from_host:  # the names only: the values stay on the worker
            body["env_from_host"] = list(spec.env_from_host)
        if spec.logs_dir:
            body["logs_dir"] = spec.logs_dir
        if spec.results_dir:
            body["results_dir"] = spec.results_dir
        if reason or self.reason:
            body["reason"] = reason or self.reason
        if output is not None:
            body["output"] = output
        if self.attempt and self.state.terminal:
            body["bill"] = self.bill()
        if self.history:
            body["attempts"] = [a.view() for a in self.history]
        return body


class Run(Record, frozen=True, kw_only=True):
    number: int
    created_at: float
    jobs: Mapping[str, str]  # job name -> job id, in the order they were given


class Callback(Record, frozen=True, kw_only=True):
    """Where a task's completion is POSTed (a webhook of its own), and the secret that signs
    it: its own, or with None the project's `callback_secret` at the time it is sent."""

    url: str
    secret: str | None = None
    # What it carries: Asphalt's task.completed, or the status document of the Swarmer API.
    shape: Literal["asphalt", "swarmer"] = "asphalt"


class Task(Record, frozen=True, kw_only=True):
    id: str
    project: str
    created_at: float
    runs: tuple[Run, ...]
    deleting: bool = False  # deleted while it ran: cancelled, and removed once it completes
    callback: Callback | None = None

    @property
    def current(self) -> Run:
        return self.runs[-1]

    def run_number(self, number: int | None) -> Run | None:
        if number is None:
            return self.current
        return next((r for r in self.runs if r.number == number), None)


def task_status(jobs: Iterable[Job]) -> tuple[TaskStatus, Outcome | None]:
    """A run's status and, once complete, its outcome, derived from its jobs: cancelled if a
    person cancelled a job of it, failed if any job that ran did not succeed, else succeeded."""
    states = [job.state for job in jobs]
    if all(state.terminal for state in states):
        return TaskStatus.COMPLETE, Outcome(outcome(states, cancelled=JobState.CANCELLED in states))
    if all(state is JobState.QUEUED for state in states):
        return TaskStatus.WAITING, None
    return TaskStatus.RUNNING, None
