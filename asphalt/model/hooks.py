"""Webhooks as records: a project's hooks, and each delivery of an event to one of them, with the
signature a receiver checks and the schedule of retries. Pure."""

from __future__ import annotations

import hashlib
import hmac
from enum import StrEnum
from typing import Any, Literal, get_args

from asphalt.model.records import rfc3339
from asphalt.wire import Record

# What a hook may ask to hear of.
HookEvent = Literal["task.created", "task.completed", "job.started", "job.ended", "job.failed"]
HOOK_EVENTS: tuple[str, ...] = get_args(HookEvent)
TIMEOUT_S = 10.0  # no answer in this long is a failed try
FIRST_RETRY_S = 5.0  # then doubling, each with up to as much again of jitter
MAX_RETRY_S = 3600.0
GIVE_UP_S = 24 * 3600.0  # a delivery is retried this long after it was made, then given up
MAX_ANSWER = 1024  # characters of a receiver's answer kept with the delivery


class DeliveryState(StrEnum):
    PENDING = "pending"  # not sent yet, or waiting for its next try
    DELIVERED = "delivered"  # a 2xx came back
    FAILED = "failed"  # given up: no 2xx in GIVE_UP_S, or its hook was deleted


class Hook(Record, frozen=True, kw_only=True):
    id: str
    project: str
    url: str
    events: tuple[str, ...]
    secret: str  # signs each delivery; never part of a view
    created_at: float

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "project": self.project,
            "url": self.url,
            "events": list(self.events),
            "createdAt": rfc3339(self.created_at),
        }


class Delivery(Record, frozen=True, kw_only=True):
    """One event for one hook: made in the transaction of the change it reports, then sent
    until a receiver answers 2xx. Its id is the `Asphalt-Delivery` header, the same on every
    try."""

    id: str
    hook: str
    project: str
    event: str
    body: str  # the JSON sent, as it was when the change was made
    created_at: float
    state: DeliveryState = DeliveryState.PENDING
    tries: int = 0
    next_at: float = 0.0  # wall time of its next try
    last_status: int | None = None
    last_answer: str | None = None  # the start of the receiver's answer, or why there was none
    last_at: float | None = None
    retry_from: float | None = None  # a redelivery's start: its day of retries counts from it

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "hook": self.hook,
            "event": self.event,
            "state": self.state,
            "tries": self.tries,
            "createdAt": rfc3339(self.created_at),
            "lastTriedAt": rfc3339(self.last_at),
            "lastStatus": self.last_status,
            "lastAnswer": self.last_answer,
            "nextTryAt": rfc3339(self.next_at) if self.state is DeliveryState.PENDING else None,
        }


CALLBACK = "task/"  # a task callback's hook id: this, then its project's id, "/" and the task's


def callback_hook(project: str, task: str) -> str:
    """The id a task's callback has among hooks, so its deliveries are kept and sent as theirs."""
    return f"{CALLBACK}{project}/{task}"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The `Asphalt-Signature` header: `t=UNIX_SECONDS,v1=HEX`, where v1 is the HMAC-SHA256 of
    "{t}.{body}" keyed with the hook's secret (as Stripe's scheme does it)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def retry_delay(tries: int, jitter: float, first_s: float = FIRST_RETRY_S) -> float:
    """Seconds before the next try after `tries` failed ones (jitter in [0, 1)): about 5-10 s
    after the first, doubling, at most an hour."""
    base = first_s * float(2 ** min(tries - 1, 20))
    return min(MAX_RETRY_S, base * (1 + jitter))
