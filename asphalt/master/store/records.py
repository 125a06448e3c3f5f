"""How records are laid out in the store: msgpack, and the decoded records kept for reuse."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import msgpack

from asphalt import wire
from asphalt.model.members import Token, Worker
from asphalt.model.records import Job, Project, Task
from asphalt.wire import Record, field_names

R = TypeVar("R")
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_REUSE_UP_TO = 16 << 10  # bigger records (a long action, a large env) are decoded every time


def pack(obj: Any) -> bytes:
    """A record (a Struct, nested records and limits included) as msgpack."""
    return msgpack.packb(obj, default=_fields, use_bin_type=True)


def _fields(obj: Any) -> dict[str, Any]:
    # msgpack calls this for every record it meets and packs the values itself.
    names = _FIELD_NAMES.get(type(obj))
    if names is None:
        if isinstance(obj, Record):
            names = field_names(obj)
        elif dataclasses.is_dataclass(obj):  # Limits, inside a job's spec
            names = tuple(f.name for f in dataclasses.fields(obj))
        else:
            raise TypeError(f"cannot store a {type(obj).__name__}")
        _FIELD_NAMES[type(obj)] = names
    return {name: getattr(obj, name) for name in names}


def pack_value(value: Any) -> bytes:
    """Plain values (numbers, strings, tuples) as msgpack."""
    return msgpack.packb(value, use_bin_type=True)


def unpack_value(raw: bytes) -> Any:
    return msgpack.unpackb(raw, raw=False)


def _unpack(raw: bytes) -> dict[str, Any]:
    data: dict[str, Any] = msgpack.unpackb(raw, raw=False)
    return data


def job(raw: bytes) -> Job:
    d = _unpack(raw)
    if not d["spec"].get("limits"):  # none set: stored as null
        d["spec"].pop("limits", None)
    return wire.record(d, Job)


def task(raw: bytes) -> Task:
    return wire.record(_unpack(raw), Task)


def project(raw: bytes) -> Project:
    return wire.record(_unpack(raw), Project)


def worker(raw: bytes) -> Worker:
    return wire.record(_unpack(raw), Worker)


def token(raw: bytes) -> Token:
    return wire.record(_unpack(raw), Token)


def decode(raw: bytes, kind: type[R]) -> R:
    """Any record kept as it is declared (hooks, deliveries)."""
    return wire.record(_unpack(raw), kind)


class Decoded(Generic[R]):
    """Records decoded before, by key, reused while their stored bytes are the same.

    Records are frozen, so one decoded copy can be handed to every reader; a changed record has
    new bytes and is decoded again. Pages and the API read the same few records over and over.
    """

    def __init__(self, decode: Callable[[bytes], R], size: int) -> None:
        self._decode = decode
        self._size = size
        self._items: dict[bytes, tuple[bytes, R]] = {}

    def __call__(self, key: bytes, raw: bytes) -> R:
        hit = self._items.get(key)
        if hit is not None and hit[0] == raw:
            return hit[1]
        record = self._decode(raw)
        self.keep(key, raw, record)
        return record

    def keep(self, key: bytes, raw: bytes, record: R) -> None:
        """Remember a record by the bytes it is stored as (a write knows both already)."""
        if len(raw) <= _REUSE_UP_TO:
            if len(self._items) >= self._size and key not in self._items:
                del self._items[next(iter(self._items))]  # the oldest goes
            self._items[key] = (raw, record)
