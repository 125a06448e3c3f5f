"""Records and messages declared once, as msgspec Structs (the only importer of msgspec): what
they are made of, how messages are read from JSON with errors that name the field, and how they
are written."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import msgspec
from msgspec import UNSET, Meta, UnsetType, field

from asphalt.errors import BadRequest

__all__ = [
    "UNSET",
    "Body",
    "Message",
    "Meta",
    "Record",
    "UnsetType",
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


class Body(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A request body a person wrote (model/bodies.py): a field it does not have is refused, since a
    typo ("acton") must not be dropped in silence."""


class Query(msgspec.Struct, frozen=True, kw_only=True):
    """A URL's query parameters (model/bodies.py), read from their text; others are left for
    whoever else reads them (the pages' `error` and `sig`)."""


class Record(msgspec.Struct, frozen=True, kw_only=True):
    """A record the master keeps (model/records.py): immutable; changed by making a new one
    (`replace`)."""


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
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<name>[^`]+)`")


def read(
    data: Any,
    kind: type[T],
    hints: Mapping[str, str] | None = None,
    *,
    at: str = "",
    text: bool = False,
) -> T:
    """`data` (parsed JSON) as a `kind`, or a 400 that names the field; `hints` gives, by field,
    the wording a person needs where msgspec's ("Expected `int` >= 1") is not it, and `at` is
    where `data` sits in the whole body ("jobs.build"), for the names in errors. With `text`,
    the values are strings to be read as the fields' types ("5", "true"): a query's."""
    try:
        return msgspec.convert(data, kind, strict=not text)
    except msgspec.ValidationError as e:
        raise _bad_request(str(e), kind, hints or {}, at) from None


def _bad_request(text: str, kind: Any, hints: Mapping[str, str], at: str) -> BadRequest:
    found = _AT.search(text)
    path = found.group("path").replace("[...]", "") if found else ""  # "[...]": a map's value
    problem = text[: found.start()] if found else text

    def named(relative: str) -> str:
        return f"{at}.{relative}" if at and relative else at or relative

    if missing := _MISSING.search(problem):
        path = f"{path}.{missing.group('name')}" if path else missing.group("name")
        name = path.split(".")[0].split("[")[0]
        hint = hints.get(name) if path == name else None
        rule = f"; it {hint}" if hint else ""
        return BadRequest(f"{named(path)} is required{rule}", field=named(name))
    if unknown := _UNKNOWN.search(problem):
        key = unknown.group("name")
        allowed = f"; allowed here: {', '.join(field_names(kind))}" if not path else ""
        return BadRequest(
            f"unknown field {key!r}{allowed}", field=named(f"{path}.{key}".lstrip("."))
        )
    name = path.split(".")[0].split("[")[0]
    if not name:
        what = at or "the body"
        return BadRequest(f"{what} must be a JSON object: {_words(problem)}", field=at or None)
    rest = path[len(name) :]
    # A hint is for the field and its items ("types[1]"), not for the fields of an object in it.
    hint = hints.get(name) if not rest.startswith(".") else None
    detail = _words(problem)
    message = f"{named(name)} {hint}" if hint else f"{named(path)}: {detail}"
    if hint and rest and "regex" not in detail:  # the item at fault, unless it is a pattern
        message += f" ({named(path)}: {detail})"
    return BadRequest(message, field=named(name))


def _words(problem: str) -> str:
    """msgspec's wording as part of a sentence: "Expected `int`" -> "expected int"."""
    words = problem.replace("`", "")
    return f"{words[:1].lower()}{words[1:]}"


_ENCODER = msgspec.json.Encoder()


def json_bytes(value: Any) -> bytes:
    """An answer (plain values, records or messages) as compact UTF-8 JSON."""
    return _ENCODER.encode(value)


def json_schemas(kinds: Sequence[Any], ref: str) -> tuple[list[Any], dict[str, Any]]:
    """JSON Schemas of these types, as declared (the same Structs that read requests), with the
    Structs they use as components to be referred to by `ref` ("#/components/schemas/{name}")."""
    schemas, components = msgspec.json.schema_components(kinds, ref_template=ref)
    return list(schemas), dict(components)


def to_json(message: Any) -> dict[str, Any]:
    """A message as a JSON object."""
    built: dict[str, Any] = msgspec.to_builtins(message)
    return built
