"""Master <-> worker messages and paths, shared by both sides (see docs/protocol.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any

from asphalt.errors import BadRequest

PREFIX = "/_worker"
REGISTER = f"{PREFIX}/register"
LEASE = PREFIX + "/{worker}/lease"
HEARTBEAT = PREFIX + "/{worker}/heartbeat"
DEREGISTER = PREFIX + "/{worker}/deregister"
OUTPUT = PREFIX + "/{worker}/jobs/{job}/output"  # ?attempt=N&offset=BYTES, raw body
FINISH = PREFIX + "/{worker}/jobs/{job}/finish"
RELEASE = PREFIX + "/{worker}/jobs/{job}/release"  # {"attempt": N}: a stopping worker hands it back

JOIN_PREFIX = "ASPHALT-1-"

INT32 = 2**31 - 1
MAX_SLOTS = 4096
LAST_TIME = 253402300799  # 9999-12-31T23:59:59Z
# What a worker may report a job ended as.
END_STATES = ("succeeded", "failed", "timed_out", "cancelled")
# A job's outputs (what it wrote to $ASPHALT_OUTPUTS): the names, and the caps a worker keeps to.
OUTPUT_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_OUTPUT_VALUE = 64 << 10  # bytes of UTF-8 in one value
MAX_OUTPUT_KEYS = 100
MAX_OUTPUTS = 1 << 20  # bytes of UTF-8 in all keys and values together


def join_token(secret: str, fingerprint: str | None) -> str:
    """The join token a worker is started with: the secret, and with TLS the master's pin.

    Like Docker Swarm's join tokens, it carries the SHA-256 of the master's certificate, so a
    worker given it trusts exactly that master and needs no CA.
    """
    return f"{JOIN_PREFIX}{fingerprint}-{secret}" if fingerprint else f"{JOIN_PREFIX}{secret}"


def parse_join(token: str) -> tuple[str, str | None] | None:
    """(secret, certificate fingerprint or None) from a join token; None if it is not one."""
    if not token.startswith(JOIN_PREFIX):
        return None
    parts = token.removeprefix(JOIN_PREFIX).split("-")
    hexdigits = set("0123456789abcdef")
    if not all(len(p) == 64 and set(p) <= hexdigits for p in parts) or len(parts) > 2:
        return None
    return (parts[1], parts[0]) if len(parts) == 2 else (parts[0], None)


def _check(data: Any, name: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(data, dict) or name not in data:
        raise BadRequest(f"{name} is required", field=name)
    value = data[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise BadRequest(f"{name} has the wrong type", field=name)
    return value


def _bounded(data: Any, name: str, low: int, high: int) -> int:
    value: int = _check(data, name, int)
    if not low <= value <= high:
        raise BadRequest(f"{name} must be from {low} to {high}", field=name)
    return value


def _flag(data: Any, name: str) -> bool:
    """An optional true/false; absent means false."""
    if name not in data:
        return False
    return bool(_check(data, name, bool))


def _time(data: Any, name: str) -> float:
    """A wall-clock time in seconds since the epoch that dates can be made of (year 1970-9999)."""
    value = _check(data, name, (int, float))
    if isinstance(value, bool) or not 0 <= value <= LAST_TIME:  # also refuses NaN
        raise BadRequest(f"{name} must be seconds since 1970, before the year 10000", field=name)
    return float(value)


def _str_list(data: Any, name: str) -> tuple[str, ...]:
    values = _check(data, name, list)
    if not all(isinstance(v, str) for v in values):
        raise BadRequest(f"{name} must be a list of strings", field=name)
    return tuple(values)


@dataclass(frozen=True, slots=True, kw_only=True)
class Registration:
    name: str
    host: str
    types: tuple[str, ...]
    runtimes: tuple[str, ...]
    slots: int
    version: str
    untyped: bool = False

    @classmethod
    def parse(cls, data: Any) -> Registration:
        slots = _bounded(data, "slots", 1, MAX_SLOTS)
        return cls(
            name=_check(data, "name", str),
            host=_check(data, "host", str),
            types=_str_list(data, "types"),
            runtimes=_str_list(data, "runtimes"),
            slots=slots,
            version=_check(data, "version", str),
            untyped=bool(data.get("untyped", False)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Welcome:
    """The master's answer to a registration: the worker's id, its credential (sent on every
    later call) and the timings it must keep."""

    worker: str
    secret: str
    poll_hold_s: float
    heartbeat_s: float
    lease_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    """One job attempt handed to a worker."""

    job: str
    attempt: int
    action: str | list[str]
    container: str | None
    env: dict[str, str]
    timeout: float | None
    runtime: str
    # Set in the job's environment like env; their values are masked in its output.
    secrets: dict[str, str] = field(default_factory=dict)
    limits: dict[str, float] = field(default_factory=dict)  # Limits.view(): memory, cpus, pids


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    running: list[tuple[str, int]] = field(default_factory=list)  # (job id, attempt)
    draining: bool = False  # the worker is stopping: it takes no new jobs

    @classmethod
    def parse(cls, data: Any) -> Heartbeat:
        running = _check(data, "running", list)
        pairs: list[tuple[str, int]] = []
        for item in running:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
                raise BadRequest("running holds [job, attempt] pairs", field="running")
            if not isinstance(item[1], int) or not 0 <= item[1] <= INT32:
                raise BadRequest("running holds [job, attempt] pairs", field="running")
            pairs.append((item[0], item[1]))
        return cls(running=pairs, draining=data.get("draining") is True)


def parse_attempt(data: Any) -> int:
    return _bounded(data, "attempt", 0, INT32)


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatReply:
    cancel: list[str] = field(default_factory=list)  # stop these jobs, report them cancelled
    forget: list[str] = field(default_factory=list)  # the master no longer leases these to you


@dataclass(frozen=True, slots=True, kw_only=True)
class Finish:
    attempt: int
    state: str
    status: int | None
    reason: str | None
    started_at: float
    ended_at: float
    # The slot is free again: answer with the next job if one is queued now (no waiting), so a
    # busy worker does not need a lease call between jobs.
    next: bool = False
    applied: dict[str, Any] | None = None  # what the runtime applied (Runtime.applied)
    outputs: dict[str, str] = field(default_factory=dict)  # what the job wrote to $ASPHALT_OUTPUTS

    @classmethod
    def parse(cls, data: Any) -> Finish:
        state = _check(data, "state", str)
        if state not in END_STATES:
            raise BadRequest(f"state must be one of {', '.join(END_STATES)}", field="state")
        status = data.get("status")
        if status is not None:
            status = _bounded(data, "status", -INT32, INT32)
        reason = data.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise BadRequest("reason must be a string or null", field="reason")
        return cls(
            attempt=_bounded(data, "attempt", 0, INT32),
            state=state,
            status=status,
            reason=reason,
            started_at=_time(data, "started_at"),
            ended_at=_time(data, "ended_at"),
            next=_flag(data, "next"),
            applied=_applied(data.get("applied")),
            outputs=_outputs(data.get("outputs")),
        )


MAX_APPLIED = 64  # keys in `applied`; each a short name with a plain value or a list of names


def _applied(value: Any) -> dict[str, Any] | None:
    """What a runtime applied: a small flat object of names to plain values."""
    if value is None:
        return None
    plain = (str, int, float, bool, type(None))
    if not isinstance(value, dict) or len(value) > MAX_APPLIED:
        raise BadRequest(
            f"applied must be an object of at most {MAX_APPLIED} keys", field="applied"
        )
    for key, item in value.items():
        items = item if isinstance(item, list) else [item]
        short = all(len(str(i)) <= 200 for i in items) and len(items) <= 64
        if len(key) > 64 or not all(isinstance(i, plain) for i in items) or not short:
            raise BadRequest(f"applied.{key} must be a short plain value", field="applied")
    return value


def _outputs(value: Any) -> dict[str, str]:
    """A job's outputs: names to UTF-8 text, within the caps; absent (an older worker) is none."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_OUTPUT_KEYS:
        raise BadRequest(
            f"outputs must be an object of at most {MAX_OUTPUT_KEYS} keys", field="outputs"
        )
    total = 0
    for key, item in value.items():
        name = f"outputs.{str(key)[:64]}"
        if not isinstance(key, str) or not OUTPUT_KEY.fullmatch(key):
            raise BadRequest(
                f"{name} is not a name of letters, digits and _ that starts with no digit",
                field="outputs",
            )
        if not isinstance(item, str):
            raise BadRequest(f"{name} must be a string", field="outputs")
        try:
            size = len(item.encode())
        except UnicodeEncodeError:  # a lone surrogate, which JSON can carry
            raise BadRequest(f"{name} must be UTF-8 text", field="outputs") from None
        if size > MAX_OUTPUT_VALUE:
            raise BadRequest(f"{name} is over {MAX_OUTPUT_VALUE >> 10} KiB", field="outputs")
        total += len(key) + size
    if total > MAX_OUTPUTS:
        raise BadRequest(f"outputs are over {MAX_OUTPUTS >> 20} MiB in total", field="outputs")
    return value


def to_json(message: Any) -> dict[str, Any]:
    """A message as a JSON object. Shallow: its fields hold only JSON values already, and a deep
    copy of every env and `applied` (dataclasses.asdict) cost more than the rest of a finish."""
    return {f.name: getattr(message, f.name) for f in fields(message)}
