"""Templates (saltant's task types): a job described once, whose arguments are given at launch
and checked against the JSON Schema (draft 2020-12) it declares. The only importer of
jsonschema; pure."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from asphalt.errors import BadRequest
from asphalt.limits import NO_LIMITS, Limits
from asphalt.model.records import rfc3339
from asphalt.wire import Record, field

_VALIDATOR = jsonschema.Draft202012Validator
_INT64 = 2**63  # whole numbers are kept (and sent to workers) as 64-bit ones


def check_numbers(value: Any, field_name: str) -> None:
    """Refuse a whole number that does not fit in 64 bits, anywhere in `value`."""
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
        elif isinstance(item, int) and not -_INT64 <= item < _INT64:
            raise BadRequest(
                f"{field_name} holds a whole number beyond 64 bits ({str(item)[:20]}...); "
                "give it as a string",
                field=field_name,
            )
        elif isinstance(item, float) and not math.isfinite(item):
            raise BadRequest(
                f"{field_name} holds {item}, which JSON cannot carry; give a finite number",
                field=field_name,
            )


class Template(Record, frozen=True, kw_only=True):
    """One version of a template; a new version is a new record, the older ones are kept."""

    name: str
    version: int
    created_at: float
    runtime: str
    command: str | list[str]  # a path, or an argv; the merged args' JSON is appended to it
    args: Mapping[str, Any] = field(default_factory=dict)  # a JSON Schema for the arguments
    container: str | None = None
    description: str = ""
    env_from_host: tuple[str, ...] = ()  # the worker's variables it is given, if allowed there
    logs_dir: str | None = None  # directories collected as the job's artifacts when it ends
    results_dir: str | None = None
    timeout: float | None = None
    types: tuple[str, ...] = ()
    limits: Limits = NO_LIMITS
    max_running: int | None = None  # how many of its jobs may run at once, across all workers

    def argv(self, args: Mapping[str, Any]) -> list[str]:
        """The command with the arguments' JSON as its one positional argument (never a shell)."""
        base = [self.command] if isinstance(self.command, str) else list(self.command)
        return [*base, json.dumps(args, separators=(",", ":"), sort_keys=True)]

    def view(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "createdAt": rfc3339(self.created_at),
            "description": self.description,
            "runtime": self.runtime,
            "container": self.container,
            "command": self.command,
            "args": dict(self.args),
            "env_from_host": list(self.env_from_host),
            "logs_dir": self.logs_dir,
            "results_dir": self.results_dir,
            "timeout": self.timeout,
            "types": list(self.types),
            "max_running": self.max_running,
        }
        if self.limits != NO_LIMITS:
            body["limits"] = self.limits.view()
        return body


def check_schema(schema: Mapping[str, Any], field_name: str = "args") -> None:
    """Refuse an arguments schema that is not valid draft 2020-12, or not about an object."""
    check_numbers(schema, field_name)
    try:
        _VALIDATOR.check_schema(schema)
    except jsonschema.SchemaError as e:
        where = "/".join(str(p) for p in e.absolute_path)
        at = f" (at {where})" if where else ""
        raise BadRequest(
            f"{field_name} is not a valid JSON Schema (draft 2020-12){at}: {e.message}",
            field=field_name,
        ) from None
    if schema.get("type", "object") != "object":
        raise BadRequest(
            f'{field_name} must describe an object of arguments: "type": "object", '
            'with "properties"',
            field=field_name,
        )
    properties = schema.get("properties", {})
    if not isinstance(properties, Mapping):
        raise BadRequest(f"{field_name}.properties must be an object", field=field_name)
    defaults = {
        name: rule["default"]
        for name, rule in properties.items()
        if isinstance(rule, Mapping) and "default" in rule
    }
    loose = {key: value for key, value in schema.items() if key != "required"}
    for error in _errors(loose, defaults, field_name):
        if error.absolute_path:  # a default its own rule refuses
            where = f"{field_name}.properties.{error.absolute_path[0]}.default"
            raise BadRequest(f"{where}: {error.message}", field=where)
    _errors(schema, {}, field_name)  # a $ref it cannot follow shows now, not at each launch


def _errors(schema: Mapping[str, Any], value: Any, field_name: str) -> list[ValidationError]:
    """What is wrong with `value` by `schema`; a schema that cannot be applied is a 400."""
    try:
        return list(_VALIDATOR(schema).iter_errors(value))
    except Exception as e:  # an unresolvable $ref, a pattern Python cannot compile
        raise BadRequest(
            f"{field_name} cannot be applied as a JSON Schema: {str(e)[:200]} (only references "
            "within the schema itself, #/$defs/..., can be followed)",
            field=field_name,
        ) from None


def merged_args(schema: Mapping[str, Any], given: Mapping[str, Any], at: str) -> dict[str, Any]:
    """The arguments given, with the schema's defaults filled in, checked against it; or a 400
    naming the argument and the rule (`args.epochs: 0 is less than the minimum of 1`). An
    argument the schema does not name is refused, unless it sets additionalProperties."""
    check_numbers(given, at)
    properties: Mapping[str, Any] = schema.get("properties", {})
    args = dict(given)
    for name, rule in properties.items():
        if name not in args and isinstance(rule, Mapping) and "default" in rule:
            args[name] = rule["default"]
    strict = dict(schema)
    strict.setdefault("additionalProperties", False)
    error = best_match(_errors(strict, args, "args"))
    if error is not None:
        raise _bad_args(error, at)
    return args


def _bad_args(error: ValidationError, at: str) -> BadRequest:
    path = [str(p) for p in error.absolute_path]
    message = error.message
    given: Any = error.instance
    if not path and error.validator == "required":
        wanted: Any = error.validator_value
        path = [n for n in wanted if n not in given][:1]
        message = "is required by the template"
    elif not path and error.validator == "additionalProperties":
        schema: Any = error.schema
        rules = schema.get("properties", {})
        extra = [n for n in given if n not in rules]
        path = extra[:1]
        known = ", ".join(rules) or "none"
        message = f"is not an argument of the template (its arguments: {known})"
    name = ".".join([at, *path])
    if message.startswith("is "):
        return BadRequest(f"{name} {message}", field=name)
    return BadRequest(f"{name}: {message}", field=name)
