"""Schedules: a cron line fires once per time it names, never twice across a restart, skips
while its last task runs (overlap: skip) and says so, and catches up as asked. The firing rules
run on a real store and scheduler with a clock the test moves; the API runs on a real master."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

from harness import CONFIG, MasterFactory

from asphalt.master.core.inputs import parse_task
from asphalt.master.core.scheduler import Scheduler
from asphalt.master.schedules import Schedules
from asphalt.master.store import Store
from asphalt.model.bodies import ScheduleBody


class Clock:
    def __init__(self, at: str) -> None:
        self.now = _t(at)

    def __call__(self) -> float:
        return self.now

    def to(self, at: str) -> None:
        self.now = _t(at)


def _t(at: str) -> float:
    return datetime.fromisoformat(at).replace(tzinfo=UTC).timestamp()


def _open(tmp_path: Path, clock: Clock) -> tuple[Store, Scheduler, Schedules]:
    store = Store(tmp_path / "store")
    config = dataclasses.replace(CONFIG, data_dir=tmp_path)
    scheduler = Scheduler(store, config, clock=clock)
    return store, scheduler, Schedules(scheduler, now=clock)


def _tasks(store: Store, project: str) -> list[str]:
    return sorted(t.id for t in store.tasks(project, limit=100))


async def test_a_minute_schedule_fires_once_a_minute_and_never_twice_across_a_restart(
    tmp_path: Path,
) -> None:
    clock = Clock("2026-01-01T00:00:30")
    store, scheduler, schedules = _open(tmp_path, clock)
    project = scheduler.tasks.create_project("p", None)
    every = ScheduleBody(name="tick", cron="* * * * *", task={"action": "true"})
    schedules.create(project, every)
    clock.to("2026-01-01T00:00:45")
    schedules.fire_due()
    assert _tasks(store, project.id) == []
    clock.to("2026-01-01T00:01:05")
    schedules.fire_due()
    schedules.fire_due()
    assert _tasks(store, project.id) == ["tick-20260101T0001"]

    clock.to("2026-01-01T00:02:01")  # the 00:01 task has no worker: it has not completed
    schedules.fire_due()
    assert _tasks(store, project.id) == ["tick-20260101T0001"]
    skipped = schedules.view(schedules.get(project, "tick"))["firings"][0]
    assert skipped["made"] is False and skipped["task"] == "tick-20260101T0002"
    assert "tick-20260101T0001" in skipped["reason"] and "overlap: skip" in skipped["reason"]

    scheduler.tasks.cancel_task(scheduler.tasks.task(project, "tick-20260101T0001"))
    clock.to("2026-01-01T00:03:02")
    schedules.fire_due()
    assert _tasks(store, project.id) == ["tick-20260101T0001", "tick-20260101T0003"]
    await store.flushed()
    store.close()

    clock.to("2026-01-01T00:03:40")  # a restart within the same minute: nothing again
    store, scheduler, schedules = _open(tmp_path, clock)
    schedules.fire_due()
    assert _tasks(store, project.id) == ["tick-20260101T0001", "tick-20260101T0003"]
    scheduler.tasks.cancel_task(scheduler.tasks.task(project, "tick-20260101T0003"))

    # Down from 00:03:40 to 00:30:10: catchup none records the latest missed firing, skipped.
    clock.to("2026-01-01T00:30:10")
    schedules.fire_due()
    assert len(_tasks(store, project.id)) == 2
    missed = schedules.view(schedules.get(project, "tick"))["firings"][0]
    assert missed["task"] == "tick-20260101T0030" and "not running" in missed["reason"]
    clock.to("2026-01-01T00:31:00")
    schedules.fire_due()
    assert _tasks(store, project.id)[-1] == "tick-20260101T0031"
    assert schedules.view(schedules.get(project, "tick"))["nextAt"] == "2026-01-01T00:32:00.000Z"
    store.close()


async def test_catchup_last_runs_the_latest_missed_firing_and_a_made_task_is_not_made_again(
    tmp_path: Path,
) -> None:
    clock = Clock("2026-03-28T23:00:00")
    store, scheduler, schedules = _open(tmp_path, clock)
    project = scheduler.tasks.create_project("p", None)
    body = ScheduleBody(
        name="hourly",
        cron="@hourly",
        timezone="Europe/Berlin",
        task={"action": "true"},
        catchup="last",
        overlap="allow",
    )
    schedules.create(project, body)
    # The spring-forward night in Berlin; down from 23:00 UTC until 04:20 UTC.
    clock.to("2026-03-29T04:20:00")
    schedules.fire_due()
    assert _tasks(store, project.id) == ["hourly-20260329T0400"]
    # The task of the next firing exists already (made before a crash, the record lost with it).
    clock.to("2026-03-29T05:00:05")
    made = parse_task({"id": "hourly-20260329T0500", "action": "true"})
    scheduler.tasks.create_task(project, made)
    schedules.fire_due()
    assert _tasks(store, project.id) == ["hourly-20260329T0400", "hourly-20260329T0500"]
    assert schedules.view(schedules.get(project, "hourly"))["firings"][0]["made"] is True
    store.close()


async def test_schedules_are_checked_listed_paused_and_deleted_over_the_api(
    master: MasterFactory,
) -> None:
    m = await master()
    await m.call("POST", "/", {"name": "p"})
    good = {
        "name": "nightly",
        "cron": "0 3 * * *",
        "timezone": "Europe/Berlin",
        "task": {"action": "make nightly", "secrets": {"TOKEN": "hunter2hunter2"}},
    }
    for change, field in (
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * *"}, "cron"),
        ({"cron": "* * * * * *"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"task": {"acton": "x"}}, "task.jobs"),
        ({"task": {"jobs": {"main": {}}}}, "task.jobs.main.action"),
        ({"task": {"id": "fixed", "action": "x"}}, "task.id"),
        ({"overlap": "sometimes"}, "overlap"),
        ({"name": "n" * 65}, "name"),
    ):
        status, answer = await m.call("POST", "/projects/p/schedules", {**good, **change})
        assert status == 400 and answer["field"] == field, (change, answer)
    status, made = await m.call("POST", "/projects/p/schedules", good)
    assert status == 201, made
    assert made["nextAt"].endswith(":00:00.000Z") and made["firings"] == []
    assert made["task"]["secrets"] == {"TOKEN": "***"}
    assert (await m.call("POST", "/projects/p/schedules", good))[0] == 409
    callback = {"url": "http://ci.example/done", "secret": "callback-secret-1234"}
    signed = {**good, "name": "signed", "task": {"action": "x", "callback": callback}}
    status, made_signed = await m.call("POST", "/projects/p/schedules", signed)
    assert status == 201 and made_signed["task"]["callback"]["secret"] == "***", made_signed
    _, listed = await m.call("GET", "/projects/p/schedules")
    assert "callback-secret-1234" not in str(listed)
    assert (await m.call("DELETE", "/projects/p/schedules/signed"))[0] == 200
    _, listed = await m.call("GET", "/projects/p/schedules")
    assert [s["name"] for s in listed["schedules"]] == ["nightly"]
    assert "hunter2" not in str(listed)
    status, paused = await m.call("POST", "/projects/p/schedules/nightly/pause")
    assert status == 200 and paused["paused"] is True and paused["nextAt"] is None
    _, resumed = await m.call("POST", "/projects/p/schedules/nightly/resume")
    assert resumed["paused"] is False and resumed["nextAt"] == made["nextAt"]
    status, token = await m.call("POST", "/tokens", {"name": "r", "scope": "read"})
    reader = {"Authorization": f"Bearer {token['token']}"}
    assert (await m.call("GET", "/projects/p/schedules", headers=reader))[0] == 200
    status, _ = await m.call("POST", "/projects/p/schedules", {**good, "name": "x"}, headers=reader)
    assert status == 403
    assert (await m.call("DELETE", "/projects/p/schedules/nightly"))[0] == 200
    assert (await m.call("GET", "/projects/p/schedules/nightly"))[0] == 404
