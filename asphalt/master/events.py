"""Typed domain events, published after the commit that made them true.

The core publishes; what reacts (waking a page's live output, a worker's held heartbeat, and
later hooks and metrics) subscribes at wiring time. A subscriber that fails is logged and the
others still hear of the event: it never undoes or stops the change it heard of.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from asphalt import log
from asphalt.model.members import Worker
from asphalt.model.records import Job, Outcome

_log = log.get("asphalt.events")


@dataclass(frozen=True, slots=True)
class JobQueued:
    job: Job  # made, queued again for a retry or a rerun, or handed back


@dataclass(frozen=True, slots=True)
class JobStarted:
    job: Job  # leased to a worker: this is its attempt `job.attempt`


@dataclass(frozen=True, slots=True)
class JobEnded:
    job: Job  # succeeded, failed, timed out, cancelled, lost for good, or skipped


@dataclass(frozen=True, slots=True)
class JobUpdated:
    job: Job  # same state, something else changed: a cancel asked for, ready, a late result


@dataclass(frozen=True, slots=True)
class TaskCreated:
    project: str
    task: str


@dataclass(frozen=True, slots=True)
class TaskCompleted:
    project: str
    task: str
    run: int
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class WorkerJoined:
    worker: Worker


@dataclass(frozen=True, slots=True)
class WorkerLost:
    worker: Worker
    why: str  # "left", "revoked"


JobEvent = JobQueued | JobStarted | JobEnded | JobUpdated
Event = (
    JobQueued
    | JobStarted
    | JobEnded
    | JobUpdated
    | TaskCreated
    | TaskCompleted
    | WorkerJoined
    | WorkerLost
)
E = TypeVar("E", bound=Event)


class Events:
    """Subscribers by event type; `publish` hands an event to them once the store commits."""

    def __init__(self, after_commit: Callable[[Callable[[], None]], None]) -> None:
        self._after_commit = after_commit
        self._subscribers: dict[type, list[Callable[[Event], None]]] = {}

    def subscribe(self, kind: type[E], fn: Callable[[E], None]) -> None:
        self._subscribers.setdefault(kind, []).append(fn)  # type: ignore[arg-type]

    def publish(self, event: Event) -> None:
        self._after_commit(lambda: self._deliver(event))

    def _deliver(self, event: Event) -> None:
        for fn in self._subscribers.get(type(event), ()):
            try:
                fn(event)
            except Exception:  # one subscriber's bug must not stop the others, or the core
                _log.exception("subscriber_failed", kind=type(event).__name__)
