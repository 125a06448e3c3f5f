"""What a job attempt used (its bill): measured by the worker (CPU seconds, peak memory) and
by the master (how long it waited for a worker, how long it ran); pure."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from asphalt.wire import Meta, Record

MAX_CPU_S = 10**9  # far above any job; also keeps a worker's report plain
MAX_MEMORY = 2**62


class Usage(Record, frozen=True, kw_only=True):
    """What the runtime measured; None where it could not (said in `measured`)."""

    cpu_s: Annotated[float, Meta(ge=0, le=MAX_CPU_S)] | None = None  # user + system
    peak_memory: Annotated[int, Meta(ge=0, le=MAX_MEMORY)] | None = None  # bytes
    measured: Annotated[str, Meta(max_length=200)] = ""  # how: "rusage", "cgroup", or why not


def bill(
    usage: Usage | None, *, waited_s: float | None, started: float | None, ended: float | None
) -> dict[str, Any]:
    """A job attempt's bill as JSON: seconds waited and run, CPU seconds, peak memory."""
    wall = round(ended - started, 3) if started is not None and ended is not None else None
    return {
        "queueWaitS": None if waited_s is None else round(waited_s, 3),
        "wallS": wall,
        "cpuS": None if usage is None or usage.cpu_s is None else round(usage.cpu_s, 3),
        "peakMemoryBytes": None if usage is None else usage.peak_memory,
        "measured": "" if usage is None else usage.measured,
    }


def total(bills: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A task's bill: the seconds of its jobs summed, and the largest peak of memory."""
    found = list(bills)

    def summed(key: str) -> float | None:
        values = [b[key] for b in found if b[key] is not None]
        return round(sum(values), 3) if values else None

    peaks = [b["peakMemoryBytes"] for b in found if b["peakMemoryBytes"] is not None]
    return {
        "queueWaitS": summed("queueWaitS"),
        "wallS": summed("wallS"),
        "cpuS": summed("cpuS"),
        "peakMemoryBytes": max(peaks) if peaks else None,
    }
