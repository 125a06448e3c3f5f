"""Schedules: cron lines that create tasks. Each firing makes the task `{name}-{YYYYmmddTHHMM}`
(UTC), so a firing is made once however often it is looked at, across restarts too: a task
that exists already is that firing, made before a crash. `overlap: skip` skips a firing while
the schedule's last task has not completed; `catchup: last` runs the latest firing missed while
the master was down (`none` records it as skipped). `fire_due` runs every second (run)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from asphalt import log
from asphalt.errors import BadRequest, Conflict, NotFound
from asphalt.master.core.inputs import parse_task
from asphalt.master.core.scheduler import Scheduler
from asphalt.master.store import schedules as table
from asphalt.model.bodies import ScheduleBody
from asphalt.model.records import Project, TaskStatus, task_status
from asphalt.model.schedules import KEPT_FIRINGS, Firing, Schedule, check, next_firing, task_id
from asphalt.wire import replace

_log = log.get("asphalt.schedules")
ON_TIME_S = 60.0  # a firing noticed later than this was missed (the master was not running)
MAX_NAME = 64
MAX_SCHEDULES = 100  # per project
LOOKBACK_S = (120.0, 3600.0, 86400.0, 40 * 86400.0)  # where the latest missed firing is sought


class Schedules:
    def __init__(self, scheduler: Scheduler, *, now: Callable[[], float] = time.time) -> None:
        self.scheduler = scheduler
        self.store = scheduler.store
        self.now = now
        self._all = {(s.project, s.name): s for s in self.store.look(table.every)}

    def create(self, project: Project, given: ScheduleBody) -> Schedule:
        if len(given.name) > MAX_NAME:
            raise BadRequest(
                f"name must be at most {MAX_NAME} characters (a firing's task id adds 14)",
                field="name",
            )
        if (project.id, given.name) in self._all:
            raise Conflict(f"project {project.name!r} has a schedule {given.name!r}", field="name")
        if sum(1 for p, _ in self._all if p == project.id) >= MAX_SCHEDULES:
            raise BadRequest(f"a project has at most {MAX_SCHEDULES} schedules", field="name")
        check(given.cron, given.timezone)
        if "id" in given.task:
            raise BadRequest(
                "task.id is made by each firing ({name}-{time}); leave it out", field="task.id"
            )
        try:
            parse_task(
                given.task, self.scheduler.templates.find
            )  # what each firing will create, checked now
        except BadRequest as e:
            raise BadRequest(f"task: {e.message}", field=f"task.{e.field or ''}".rstrip(".")) from e
        schedule = Schedule(
            project=project.id,
            name=given.name,
            cron=given.cron,
            timezone=given.timezone,
            task=given.task,
            overlap=given.overlap,
            catchup=given.catchup,
            created_at=self.now(),
        )
        self._save(schedule)
        _log.info("schedule_created", project=project.id, name=schedule.name, cron=schedule.cron)
        return schedule

    def of(self, project: Project) -> list[Schedule]:
        return sorted((s for (p, _), s in self._all.items() if p == project.id), key=_name)

    def get(self, project: Project, name: str) -> Schedule:
        found = self._all.get((project.id, name))
        if found is None:
            raise NotFound(f"no schedule {name!r} in project {project.name!r}", field="schedule")
        return found

    def pause(self, project: Project, name: str, paused: bool) -> Schedule:
        """Pause, or resume: a resumed schedule fires next at its first time from now on."""
        schedule = self.get(project, name)
        if paused == schedule.paused:
            return schedule
        changed = replace(schedule, paused=paused)
        if not paused:
            changed = replace(changed, last_at=max(changed.start, self.now()))
        self._save(changed)
        return changed

    def delete(self, project: Project, name: str) -> None:
        self.get(project, name)
        self.store.change(lambda t: table.delete(t, project.id, name))
        del self._all[(project.id, name)]

    def drop_project(self, project: Project) -> None:
        """The project is being removed: so are its schedules."""
        for _, name in [k for k in self._all if k[0] == project.id]:
            self.delete(project, name)

    def view(self, schedule: Schedule) -> dict[str, Any]:
        return schedule.view(self.now())

    async def run(self) -> None:
        """Fire what is due, every second, until cancelled."""
        while True:
            try:
                self.fire_due()
            except Exception:  # one bad schedule must not stop the others, or the master
                _log.exception("schedules_failed")
            await asyncio.sleep(1.0)

    def fire_due(self) -> None:
        if self.scheduler.closing:
            return
        now = self.now()
        for schedule in list(self._all.values()):
            if schedule.paused:
                continue
            due = next_firing(schedule, schedule.start)
            if due > now:
                continue
            if now - due <= ON_TIME_S:
                self._fire(schedule, due)
            else:  # the master was not running then: the latest firing missed
                latest = _latest(schedule, now)
                if schedule.catchup == "last":
                    self._fire(schedule, latest)
                else:
                    why = "missed while the master was not running (catchup: none)"
                    self._record(
                        schedule,
                        Firing(at=latest, task=task_id(schedule, latest), made=False, reason=why),
                    )

    def _fire(self, schedule: Schedule, at: float) -> None:
        made = task_id(schedule, at)
        running = self._running(schedule)
        if schedule.overlap == "skip" and running is not None:
            why = f"task {running} of this schedule has not completed (overlap: skip)"
            _log.info("schedule_skipped", project=schedule.project, name=schedule.name, at=at)
            self._record(schedule, Firing(at=at, task=made, made=False, reason=why))
            return
        project = self.scheduler.tasks.project(schedule.project)
        try:
            self.scheduler.tasks.create_task(
                project, parse_task({**schedule.task, "id": made}, self.scheduler.templates.find)
            )
        except Conflict:
            pass  # made already, by this firing before a restart
        except BadRequest as e:  # the body no longer passes (a rule changed since)
            self._record(schedule, Firing(at=at, task=made, made=False, reason=e.message))
            return
        _log.info("schedule_fired", project=schedule.project, name=schedule.name, task=made)
        self._record(schedule, Firing(at=at, task=made, made=True))

    def _running(self, schedule: Schedule) -> str | None:
        """The schedule's last task, if it has not completed."""
        last = next((f for f in reversed(schedule.firings) if f.made), None)
        if last is None:
            return None
        task = self.store.task(schedule.project, last.task)
        if task is None:
            return None
        status, _ = task_status(self.scheduler.tasks.run_jobs(task.current).values())
        return last.task if status is not TaskStatus.COMPLETE else None

    def _record(self, schedule: Schedule, firing: Firing) -> None:
        firings = (*schedule.firings, firing)[-KEPT_FIRINGS:]
        self._save(replace(schedule, last_at=firing.at, firings=firings))

    def _save(self, schedule: Schedule) -> None:
        self.store.change(lambda t: table.put(t, schedule))
        self._all[(schedule.project, schedule.name)] = schedule


def _name(schedule: Schedule) -> str:
    return schedule.name


def _latest(schedule: Schedule, now: float) -> float:
    """The latest firing at or before `now`, after the schedule's start."""
    for back in LOOKBACK_S:
        at, latest = max(schedule.start, now - back), None
        while (at := next_firing(schedule, at)) <= now:
            latest = at
        if latest is not None:
            return latest
    return next_firing(schedule, schedule.start)  # long ago: the first one missed stands for all
