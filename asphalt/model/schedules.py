"""Schedules as records: a cron line in a time zone that makes a task at each firing, and what
each recent firing did. Pure apart from the cron library (cronsim, imported here only)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from asphalt.errors import BadRequest
from asphalt.model.records import MASK, rfc3339
from asphalt.wire import Record

Overlap = Literal["skip", "allow"]
Catchup = Literal["none", "last"]
KEPT_FIRINGS = 20  # the latest firings a schedule keeps, for its view and page
# The @-names cron knows, as the lines they stand for.
NAMED = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class Firing(Record, frozen=True, kw_only=True):
    at: float  # the time the cron line named (not when it was noticed)
    task: str  # the task's id, made or not
    made: bool  # False: skipped
    reason: str | None = None


class Schedule(Record, frozen=True, kw_only=True):
    project: str
    name: str
    cron: str
    timezone: str
    task: Mapping[str, Any]  # the task body each firing creates (checked when it was given)
    overlap: Overlap = "skip"
    catchup: Catchup = "none"
    paused: bool = False
    created_at: float
    # The last firing dealt with (made or skipped): the next is the first after it.
    last_at: float | None = None
    firings: tuple[Firing, ...] = ()

    def view(self, now: float) -> dict[str, Any]:
        task = _masked(dict(self.task))
        return {
            "project": self.project,
            "name": self.name,
            "cron": self.cron,
            "timezone": self.timezone,
            "task": task,
            "overlap": self.overlap,
            "catchup": self.catchup,
            "paused": self.paused,
            "createdAt": rfc3339(self.created_at),
            "nextAt": None if self.paused else rfc3339(next_firing(self, max(now, self.start))),
            "firings": [
                {"at": rfc3339(f.at), "task": f.task, "made": f.made, "reason": f.reason}
                for f in reversed(self.firings)
            ],
        }

    @property
    def start(self) -> float:
        """The time after which the next firing is looked for."""
        return self.last_at if self.last_at is not None else self.created_at


def _masked(task: dict[str, Any]) -> dict[str, Any]:
    """The body with its secrets' values hidden (names kept), and its callback's secret."""
    callback = task.get("callback")
    if isinstance(callback, dict) and callback.get("secret") is not None:
        task["callback"] = {**callback, "secret": MASK}
    if isinstance(task.get("secrets"), dict):
        task["secrets"] = dict.fromkeys(task["secrets"], MASK)
    if isinstance(task.get("jobs"), dict):
        task["jobs"] = {
            name: {**job, "secrets": dict.fromkeys(job["secrets"], MASK)}
            if isinstance(job, dict) and isinstance(job.get("secrets"), dict)
            else job
            for name, job in task["jobs"].items()
        }
    return task


def check(cron: str, timezone: str) -> None:
    """Refuse, naming the field, a cron line or a time zone that cannot be used."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadRequest(
            f"timezone {timezone[:64]!r} is no IANA time zone; e.g. UTC or Europe/Berlin",
            field="timezone",
        ) from None
    line = NAMED.get(cron.strip(), cron)
    try:
        if len(line.split()) != 5:  # cronsim also takes a sixth field, for seconds
            raise CronSimError("Wrong number of fields")
        CronSim(line, datetime.now(zone))
    except CronSimError as e:
        raise BadRequest(
            f"cron {cron[:100]!r} is not a cron line ({e}); give five fields, minute hour "
            'day-of-month month day-of-week, e.g. "*/15 * * * *", or @hourly, @daily, ...',
            field="cron",
        ) from None


def next_firing(schedule: Schedule, after: float) -> float:
    """The first time after `after` the schedule's cron line names, in its time zone (DST as
    cronsim treats it: a time that does not exist that day fires once, when the clock has
    passed it)."""
    zone = ZoneInfo(schedule.timezone)
    start = datetime.fromtimestamp(after, zone)
    return next(CronSim(NAMED.get(schedule.cron.strip(), schedule.cron), start)).timestamp()


def task_id(schedule: Schedule, at: float) -> str:
    """The id of the task a firing makes: `{name}-{YYYYmmddTHHMM}`, in UTC, so a time the clocks
    pass twice in autumn still names two firings."""
    return f"{schedule.name}-{datetime.fromtimestamp(at, UTC):%Y%m%dT%H%M}"
