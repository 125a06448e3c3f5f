"""Small text helpers for pages: durations, sizes, ANSI codes, state groups."""

from __future__ import annotations

import re
from datetime import datetime

# CSI sequences (colours, cursor moves) and OSC sequences (titles, links), as terminals see them.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
ENDED = ("succeeded", "failed", "timed_out", "cancelled", "lost", "skipped")


def strip_ansi(text: str) -> str:
    """Output without terminal escape codes (colours would otherwise show as `[31m`)."""
    return _ANSI.sub("", text).replace("\r\n", "\n")


def seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (_parse(end) - _parse(start)).total_seconds()


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def human_size(size: int | None) -> str:
    """Bytes as people read them: 512 B, 3.4 KB, 210.7 MB (powers of 1000, as df -H)."""
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
