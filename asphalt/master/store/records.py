"""How records are laid out in the store: msgpack, and the decoded records kept for reuse."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import msgpack

from asphalt.graph import When
from asphalt.limits import NO_LIMITS, Limits
from asphalt.model import (
    Attempt,
    Job,
    JobInput,
    JobState,
    Project,
    Run,
    Scope,
    Task,
    Token,
    Worker,
)

R = TypeVar("R")
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_REUSE_UP_TO = 16 << 10  # bigger records (a long action, a large env) are decoded every time


def pack(obj: Any) -> bytes:
    """A record (a frozen dataclass, nested ones included) as msgpack."""
    return msgpack.packb(obj, default=_fields, use_bin_type=True)


def _fields(obj: Any) -> dict[str, Any]:
    # msgpack calls this for every record it meets and packs the values itself.
    names = _FIELD_NAMES.get(type(obj))
    if names is None:
        if not dataclasses.is_dataclass(obj):
            raise TypeError(f"cannot store a {type(obj).__name__}")
        names = _FIELD_NAMES[type(obj)] = tuple(f.name for f in dataclasses.fields(obj))
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
    spec = d["spec"]
    spec["types"] = tuple(spec["types"])
    spec["secrets"] = tuple(spec.get("secrets", ()))
    spec["limits"] = Limits(**spec["limits"]) if spec.get("limits") else NO_LIMITS
    spec["needs"] = tuple(spec["needs"])
    spec["when"] = When(spec["when"])
    d["spec"] = JobInput(**spec)
    d["state"] = JobState(d["state"])
    d["history"] = tuple(Attempt(**{**a, "state": JobState(a["state"])}) for a in d["history"])
    return Job(**d)


def task(raw: bytes) -> Task:
    d = _unpack(raw)
    d["runs"] = tuple(Run(**r) for r in d["runs"])
    return Task(**d)


def project(raw: bytes) -> Project:
    return Project(**_unpack(raw))


def worker(raw: bytes) -> Worker:
    d = _unpack(raw)
    d["types"] = tuple(d["types"])
    d["runtimes"] = tuple(d["runtimes"])
    return Worker(**d)


def token(raw: bytes) -> Token:
    d = _unpack(raw)
    d["scope"] = Scope(d["scope"])
    d["projects"] = tuple(d["projects"])
    return Token(**d)


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
