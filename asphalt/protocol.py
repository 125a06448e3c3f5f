"""Master <-> worker messages and paths, shared by both sides (see docs/protocol.md)."""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterable
from typing import Annotated, Any, Literal, TypeVar, get_args

from asphalt import wire
from asphalt.errors import BadRequest
from asphalt.limits import parse_limits
from asphalt.model.records import JobInput
from asphalt.model.usage import Usage
from asphalt.wire import Message, Meta, field
from asphalt.wire import to_json as to_json  # protocol users write messages with it

M = TypeVar("M", bound=Message)

PREFIX = "/_worker"
REGISTER = f"{PREFIX}/register"
LEASE = PREFIX + "/{worker}/lease"
HEARTBEAT = PREFIX + "/{worker}/heartbeat"
DEREGISTER = PREFIX + "/{worker}/deregister"
OUTPUT = PREFIX + "/{worker}/jobs/{job}/output"  # ?attempt=N&offset=BYTES, frames (FRAMES)
FINISH = PREFIX + "/{worker}/jobs/{job}/finish"
# POST a Manifest ?attempt=N; then PUT each file it keeps ?attempt=N&path=P, the body its bytes.
ARTIFACTS = PREFIX + "/{worker}/jobs/{job}/artifacts"
RELEASE = PREFIX + "/{worker}/jobs/{job}/release"  # {"attempt": N}: a stopping worker hands it back

JOIN_PREFIX = "ASPHALT-1-"
# The shape of these messages. A master refuses to register a worker that speaks another (an
# older release), which would otherwise refuse every lease; workers before 2 do not say.
# 3: output is sent as frames that say which stream each piece came from.
# 4: leases carry templates' args, env_from_host and artifact directories; registrations the
# worker's -env-allow; artifacts are sent before the finish, which carries the job's usage.
PROTOCOL = 4

# An output upload of this type is frames: a stream (STDOUT or STDERR, one byte), a length (four
# bytes, big-endian) and that many bytes, again and again. Any other body is stdout, whole.
FRAMES = "application/x-asphalt-frames"
STDOUT, STDERR = 1, 2
STREAMS = {"stdout": STDOUT, "stderr": STDERR}
Frame = tuple[int, bytes]  # a piece of output and the stream it came from
_FRAME = struct.Struct(">BI")
FRAME_HEADER = _FRAME.size  # what each frame adds to the bytes it carries
MAX_FRAMES = 4096  # in one upload: each is a write to the store, and the master does them at once

INT32 = 2**31 - 1
MAX_SLOTS = 4096
LAST_TIME = 253402300799  # 9999-12-31T23:59:59Z
# What a worker may report a job ended as.
EndState = Literal["succeeded", "failed", "timed_out", "cancelled"]
END_STATES: tuple[str, ...] = get_args(EndState)
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


Attempt = Annotated[int, Meta(ge=0, le=INT32)]
Time = Annotated[float, Meta(ge=0, le=LAST_TIME)]  # seconds since 1970; NaN refused too

# Where msgspec's wording ("Expected `int` >= 1") is not what a person needs.
HINTS = {
    "slots": f"must be from 1 to {MAX_SLOTS}",
    "state": f"must be one of {', '.join(END_STATES)}",
    "status": f"must be a whole number from {-INT32} to {INT32}, or null",
    "attempt": f"must be a whole number from 0 to {INT32}",
    "running": "holds [job, attempt] pairs",
    "started_at": "must be seconds since 1970, before the year 10000",
    "ended_at": "must be seconds since 1970, before the year 10000",
    "types": "must be a list of strings",
    "runtimes": "must be a list of strings",
    "outputs": "must be an object of names to strings",
    "env_allow": "must be a list of variable names or PREFIX_* patterns",
}


class Registration(Message, frozen=True, kw_only=True):
    name: str
    host: str
    types: tuple[str, ...]
    runtimes: tuple[str, ...]
    slots: Annotated[int, Meta(ge=1, le=MAX_SLOTS)]
    version: str
    untyped: bool = False
    protocol: int = 1  # PROTOCOL; absent from the workers that came before it
    # Its -env-allow: which of its variables jobs may be given (names, PREFIX_*).
    env_allow: tuple[Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*\*?\Z")], ...] = ()


def check_protocol(reg: Registration) -> None:
    """Refuse a worker that speaks another protocol than this master: it must be upgraded."""
    if reg.protocol != PROTOCOL:
        raise BadRequest(
            f"this worker (version {reg.version[:40]}) speaks protocol {reg.protocol} and this "
            f"master speaks {PROTOCOL}: run the same release of Asphalt on both",
            field="protocol",
        )


class Manifest(Message, frozen=True, kw_only=True):
    """The files a job left in its logs and results directories: (path, size) each, and what
    was not sent with why (a symlink, not a regular file)."""

    files: list[tuple[str, Annotated[int, Meta(ge=0)]]] = []
    skipped: list[tuple[str, str]] = []


class Welcome(Message, frozen=True, kw_only=True):
    """The master's answer to a registration: the worker's id, its credential (sent on every
    later call) and the timings it must keep."""

    worker: str
    secret: str
    poll_hold_s: float
    heartbeat_s: float
    lease_s: float


class Lease(Message, frozen=True, kw_only=True):
    """One job attempt handed to a worker (validated on arrival there too)."""

    job: str
    attempt: Attempt
    spec: JobInput  # the job as the master keeps it (model/records.py), sent as it is
    # What this attempt adds to the job's env: ASPHALT_* (which job, its needs' results).
    env: dict[str, str] = field(default_factory=dict)
    # Set in the job's environment like env; their values are masked in its output.
    secrets: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        parse_limits(self.spec.limits.view(), "spec.limits")


class Heartbeat(Message, frozen=True, kw_only=True):
    running: list[tuple[str, Attempt]]  # (job id, attempt)
    draining: bool = False  # the worker is stopping: it takes no new jobs


class Release(Message, frozen=True, kw_only=True):
    attempt: Attempt


class HeartbeatReply(Message, frozen=True, kw_only=True):
    cancel: list[str] = field(default_factory=list)  # stop these jobs, report them cancelled
    forget: list[str] = field(default_factory=list)  # the master no longer leases these to you


class Finish(Message, frozen=True, kw_only=True):
    attempt: Attempt
    state: EndState
    status: Annotated[int, Meta(ge=-INT32, le=INT32)] | None
    reason: str | None
    started_at: Time
    ended_at: Time
    # The slot is free again: answer with the next job if one is queued now (no waiting), so a
    # busy worker does not need a lease call between jobs.
    next: bool = False
    applied: dict[str, Any] | None = None  # what the runtime applied (Runtime.applied)
    outputs: dict[str, str] = field(default_factory=dict)  # what the job wrote to $ASPHALT_OUTPUTS
    usage: Usage | None = None  # what its runtime measured it use

    def __post_init__(self) -> None:
        _applied(self.applied)
        _outputs(self.outputs)


def read(data: Any, kind: type[M]) -> M:
    """A message from parsed JSON, or a 400 naming the field."""
    return wire.read(data, kind, HINTS)


MAX_APPLIED = 64  # keys in `applied`, and items in one of its lists
MAX_APPLIED_TEXT = 200  # characters in one of its strings
INT64 = 2**63 - 1  # what msgpack, and so the store, can hold


def fit_applied(value: dict[str, Any]) -> dict[str, Any]:
    """What a runtime applied, made what `Finish` accepts: the first keys, long lists ending in
    a marker that says how many names were left out, long strings shortened, and what is not a
    plain value (a nested list or object, a number out of range) as its text."""

    def one(item: Any) -> Any:
        if isinstance(item, str):
            return item[:MAX_APPLIED_TEXT]
        return item if _plain(item) else str(item)[:MAX_APPLIED_TEXT]  # 2**70, NaN, a list

    def fit(item: Any) -> Any:
        if not isinstance(item, list | tuple):
            return one(item)
        if len(item) <= MAX_APPLIED:
            return [one(i) for i in item]
        kept = MAX_APPLIED - 1
        return [one(i) for i in item[:kept]] + [f"... {len(item) - kept} more"]

    return {key[:MAX_APPLIED]: fit(item) for key, item in list(value.items())[:MAX_APPLIED]}


def _plain(item: Any) -> bool:
    """A value the store can keep as it is: text, a whole number msgpack holds, a finite number."""
    if isinstance(item, bool) or item is None:
        return True
    if isinstance(item, str):
        return len(item) <= MAX_APPLIED_TEXT
    if isinstance(item, int):
        return -INT64 - 1 <= item <= INT64
    return isinstance(item, float) and math.isfinite(item)


def _applied(value: Any) -> dict[str, Any] | None:
    """What a runtime applied: a small flat object of names to plain values or lists of them."""
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > MAX_APPLIED:
        raise BadRequest(
            f"applied must be an object of at most {MAX_APPLIED} keys", field="applied"
        )
    for key, item in value.items():
        items = item if isinstance(item, list) else [item]
        if len(key) > MAX_APPLIED or len(items) > MAX_APPLIED or not all(map(_plain, items)):
            raise BadRequest(
                f"applied.{key[:MAX_APPLIED]} must be a short plain value, or a list of at most "
                f"{MAX_APPLIED} of them",
                field="applied",
            )
    return value


def _outputs(value: dict[str, str]) -> dict[str, str]:
    """A job's outputs: names to UTF-8 text, within the caps."""
    if len(value) > MAX_OUTPUT_KEYS:
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


def pack_frames(frames: Iterable[Frame]) -> bytes:
    """Output pieces and their streams as the body of an upload of type FRAMES."""
    return b"".join(_FRAME.pack(stream, len(data)) + data for stream, data in frames)


def unpack_frames(body: bytes) -> list[Frame]:
    """The pieces of an upload of type FRAMES, checked."""
    frames: list[Frame] = []
    at = 0
    view = memoryview(body)
    while at < len(body):
        if len(frames) == MAX_FRAMES:
            raise BadRequest(f"an upload holds at most {MAX_FRAMES} frames", field="body")
        start = at
        if len(body) - at < _FRAME.size:
            raise BadRequest(f"the output frame at byte {start} is cut short", field="body")
        stream, size = _FRAME.unpack_from(body, at)
        at += _FRAME.size + size
        if stream not in (STDOUT, STDERR):
            raise BadRequest(
                f"the output frame at byte {start} names stream {stream}; use 1 or 2", field="body"
            )
        if at > len(body):
            raise BadRequest(f"the output frame at byte {start} is cut short", field="body")
        frames.append((stream, bytes(view[at - size : at])))
    return frames
