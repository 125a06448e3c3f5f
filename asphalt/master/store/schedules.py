"""The schedules table: project, name -> a schedule, written through `Store.change`."""

from __future__ import annotations

from asphalt.master.store import keys, records
from asphalt.master.store.migrations import Tables
from asphalt.model.schedules import Schedule


def _key(project: str, name: str) -> bytes:
    return project.encode() + keys.SEP + name.encode()


def put(tables: Tables, schedule: Schedule) -> None:
    tables.put("schedules", _key(schedule.project, schedule.name), records.pack(schedule))


def delete(tables: Tables, project: str, name: str) -> None:
    tables.delete("schedules", _key(project, name))


def every(tables: Tables) -> list[Schedule]:
    return [records.decode(raw, Schedule) for _, raw in tables.items("schedules")]
