"""Records and messages declared once, as msgspec Structs (the only importer of msgspec): what
they are made of, how messages are read from JSON with errors that name the field, and how they
are written."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec
from msgspec import Meta, field

from asphalt.errors import BadRequest

__all__ = [
    "Message",
    "Meta",
    "Record",
    "field",
    "field_names",
    "read",
    "record",
    "replace",
    "to_json",
]

T = TypeVar("T")
replace = msgspec.structs.replace  # a copy of a message with some fields changed


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """A message between master and worker: immutable, fields by name, unknown fields ignored
    (a newer peer may send more)."""


class Record(msgspec.Struct, frozen=True, kw_only=True):
    """A record the master keeps (model.py): immutable; changed by making a new one (`replace`)."""


def record(data: Any, kind: type[T]) -> T:
    """A stored record from its unpacked fields (nested records, enums and tuples made as its
    declaration says); a record that does not fit its declaration is a bug or a damaged store,
    and raises."""
    return msgspec.convert(data, kind)


def field_names(record: Any) -> tuple[str, ...]:
    """The names of a record's or message's fields, in the order they are declared."""
    names: tuple[str, ...] = record.__struct_fields__
    return names


_AT = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_MISSING = re.compile(r"Object missing required field `(?P<name>[^`]+)`")


def read(data: Any, kind: type[T], hints: Mapping[str, str] | None = None) -> T:
    """`data` (parsed JSON) as a `kind`, or a 400 that names the field; `hints` gives, by field,
    the wording a person needs where msgspec's ("Expected `int` >= 1") is not it."""
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as e:
        raise _bad_request(str(e), hints or {}) from None


def _bad_request(text: str, hints: Mapping[str, str]) -> BadRequest:
    at = _AT.search(text)
    path = at.group("path").replace("[...]", "") if at else ""  # "[...]": a map's value
    problem = text[: at.start()] if at else text
    missing = _MISSING.search(problem)
    if missing:
        path = f"{path}.{missing.group('name')}" if path else missing.group("name")
        return BadRequest(f"{path} is required", field=path.split(".")[0].split("[")[0])
    name = path.split(".")[0].split("[")[0]
    if not name:
        return BadRequest(f"the body must be a JSON object: {problem}")
    hint = hints.get(name) if path == name else None
    words = problem.replace("`", "")
    return BadRequest(
        f"{name} {hint}" if hint else f"{path}: {words[:1].lower()}{words[1:]}", field=name
    )


def to_json(message: Any) -> dict[str, Any]:
    """A message as a JSON object."""
    built: dict[str, Any] = msgspec.to_builtins(message)
    return built
