"""A job's resource limits (memory, CPUs, processes): the record, read from a job or a flag.

The same record is a job's own limits (from its definition) and a worker's defaults (from its
flag, such as `-limits memory=512m`); `merged` gives the job's where set, else the worker's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from asphalt.errors import BadRequest

T = TypeVar("T")

MIN_MEMORY = 6 << 20  # Docker (20.10 and later) refuses a container less memory than this
MAX_MEMORY = 1 << 50  # a petabyte: far above any machine, far below Docker's int64
MIN_CPUS, MAX_CPUS = 0.01, 1024.0  # Docker's quota has a floor of 1 ms per 100 ms period
MAX_PIDS = 4 << 20  # the kernel's own ceiling on process ids
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_SIZE = re.compile(r"([0-9]+)([kmg]?)", re.IGNORECASE)
_NAMES = ("memory", "cpus", "pids")
_EXAMPLE = '{"memory": "512m", "cpus": 1.5, "pids": 256}'
_FLAG_EXAMPLE = "memory=512m,cpus=1.5,pids=256"
_RULES = {
    "memory": 'must be bytes or a size such as "512m" or "2g" (k, m, g), from 6m to 1048576g',
    "cpus": f"must be a number of CPUs from {MIN_CPUS} to {MAX_CPUS:g}, such as 1.5",
    "pids": f"must be a whole number of processes from 1 to {MAX_PIDS}, such as 256",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Resource limits; None means not set here (another default, or none, applies)."""

    memory: int | None = None  # bytes
    cpus: float | None = None
    pids: int | None = None

    def view(self) -> dict[str, int | float]:
        """The limits that are set, as JSON: memory in bytes, cpus, pids."""
        values = {"memory": self.memory, "cpus": self.cpus, "pids": self.pids}
        return {name: value for name, value in values.items() if value is not None}

    def merged(self, default: Limits) -> Limits:
        """These limits, with `default`'s filling in whatever is not set here."""
        return Limits(
            memory=self.memory if self.memory is not None else default.memory,
            cpus=self.cpus if self.cpus is not None else default.cpus,
            pids=self.pids if self.pids is not None else default.pids,
        )


NO_LIMITS = Limits()


def parse_limits(value: Any, field: str) -> Limits:
    """Limits from JSON such as {"memory": "512m", "cpus": 1.5, "pids": 256}; None is no limits.

    A view() reads back as the same limits. Raises BadRequest naming the field at fault.
    """
    if value is None:
        return Limits()
    if not isinstance(value, dict):
        raise BadRequest(f"{field} must be an object such as {_EXAMPLE}", field=field)
    for key in value:
        if key not in _NAMES:
            raise BadRequest(
                f"{field}.{key} is not a limit; the limits are memory, cpus and pids",
                field=f"{field}.{key}",
            )
    try:
        return _limits(value)
    except _Invalid as e:
        raise BadRequest(f"{field}.{e.name} {_RULES[e.name]}", field=f"{field}.{e.name}") from None


def parse_limits_flag(text: str) -> Limits:
    """Limits from a flag such as "memory=512m,cpus=1.5,pids=256"; "" is no limits.

    Raises ValueError saying what is wrong and what a good value looks like.
    """
    given: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, equals, raw = item.partition("=")
        name, raw = name.strip().lower(), raw.strip()
        if not equals or name not in _NAMES:
            raise ValueError(f"limits: {item!r} is not NAME=VALUE with NAME memory, cpus or pids")
        if name in given:
            raise ValueError(f"limits: {name} is given twice")
        given[name] = raw
    try:
        return _limits({name: _from_text(name, raw) for name, raw in given.items()})
    except _Invalid as e:
        raise ValueError(f"limits: {e.name} {_RULES[e.name]}, e.g. {_FLAG_EXAMPLE}") from None


class _Invalid(Exception):
    """One limit's value is not valid."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _limits(values: dict[str, Any]) -> Limits:
    return Limits(
        memory=_optional(values.get("memory"), _memory),
        cpus=_optional(values.get("cpus"), _cpus),
        pids=_optional(values.get("pids"), _pids),
    )


def _optional(value: Any, check: Callable[[Any], T]) -> T | None:
    return None if value is None else check(value)


def _memory(value: Any) -> int:
    if isinstance(value, str) and (size := _SIZE.fullmatch(value)):
        value = int(size[1]) * _UNITS[size[2].lower()]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid("memory")
    if not MIN_MEMORY <= value <= MAX_MEMORY:
        raise _Invalid("memory")
    return value


def _cpus(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid("cpus")
    if not MIN_CPUS <= value <= MAX_CPUS:  # also refuses NaN
        raise _Invalid("cpus")
    return float(value)


def _pids(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PIDS:
        raise _Invalid("pids")
    return value


def _from_text(name: str, raw: str) -> Any:
    """A flag's text as the JSON value it stands for (memory stays text: "512m")."""
    if name == "memory":
        return raw
    try:
        return float(raw) if name == "cpus" else int(raw)
    except ValueError:
        raise _Invalid(name) from None
