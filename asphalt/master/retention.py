"""Retention: deleting a task or a project (what still runs is cancelled first, and removed once
it has stopped), and the keep-days policy, which removes completed tasks older than their
project's `keep_days` or the master's `-keep-days`, output and all (0: kept until deleted)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial

from asphalt import log
from asphalt.master import events
from asphalt.master.core.scheduler import Scheduler
from asphalt.master.store import retention as table
from asphalt.model.records import Project, Task, TaskStatus, rfc3339, task_status
from asphalt.wire import replace

_log = log.get("asphalt.retention")
DAY_S = 86400.0
SWEEP_S = 60.0
SWEEP_MOST = 500  # tasks removed per project in one sweep; the next sweep takes the rest
SWEEP_LOOK = 5000  # of its oldest tasks looked at (some may still run, or be rerun lately)


class Retention:
    def __init__(
        self, scheduler: Scheduler, keep_days: int, *, now: Callable[[], float] = time.time
    ) -> None:
        self.scheduler = scheduler
        self.store = scheduler.store
        self.keep_days = keep_days
        self.now = now
        # Told of a project removed, to forget what they hold of it (hooks, schedules).
        self.forget: list[Callable[[Project], None]] = []
        self.also_sweep: list[Callable[[], int]] = []  # more to prune each sweep (deliveries)
        scheduler.events.subscribe(events.TaskCompleted, self._completed)

    def _complete(self, task: Task) -> bool:
        jobs = self.scheduler.tasks.run_jobs(task.current).values()
        return task_status(jobs)[0] is TaskStatus.COMPLETE

    def delete_task(self, project: Project, task: Task) -> bool:
        """Remove the task now (True) or, if it runs, cancel it and remove it once it has
        stopped (False)."""
        if self._complete(task):
            self.store.change(lambda t: table.delete_task(t, task))
            _log.info("task_deleted", project=project.id, task=task.id)
            return True
        marked = replace(task, deleting=True)
        self.store.change(lambda t: table.save_task(t, marked))
        self.scheduler.tasks.cancel_task(marked)
        return False

    def delete_project(self, project: Project) -> int:
        """Remove the project with its tasks; how many tasks are still stopping (0: gone now)."""
        marked = replace(project, deleting=True)
        self.store.change(lambda t: table.save_project(t, marked))
        waiting = 0
        for task in self._tasks(project):
            waiting += not self.delete_task(project, task)
        if waiting == 0:
            self._remove_project(marked)
        return waiting

    def keep_until(self, project: Project, ended_at: float | None) -> str | None:
        """When a task that ended then is removed, or None if it is kept until deleted."""
        days = self._days(project)
        return rfc3339(ended_at + days * DAY_S) if days and ended_at else None

    def finish(self) -> None:
        """Finish the deletions an earlier run of the master left: a task marked whose run has
        stopped is removed (it stopped while the master was away, or just before it went), and
        a project marked goes once its tasks have."""
        for project_id, task_id in self.store.look(table.marked_tasks):
            task = self.store.task(project_id, task_id)
            if task is None:
                self.store.change(partial(table.unmark, project=project_id, task=task_id))
            elif self._complete(task):
                self.store.change(partial(table.delete_task, task=task))
                _log.info("task_deleted", project=project_id, task=task_id)
        for project in self.store.projects():
            if project.deleting and not self._tasks(project):
                self._remove_project(project)

    async def run(self) -> None:
        """Finish what an earlier run left, then sweep every minute until cancelled."""
        try:
            self.finish()
        except Exception:  # retention must never take the master down
            _log.exception("finish_failed")
        while True:
            await asyncio.sleep(SWEEP_S)
            try:
                self.sweep()
            except Exception:  # retention must never take the master down
                _log.exception("sweep_failed")

    def sweep(self) -> int:
        """Remove the completed tasks past their keep-days; how many were removed."""
        removed, now = 0, self.now()
        for project in self.store.projects():
            days = self._days(project)
            if not days:
                continue
            cutoff = now - days * DAY_S
            oldest = partial(
                table.oldest_tasks, project=project.id, created_before=cutoff, limit=SWEEP_LOOK
            )
            ids = self.store.look(oldest)
            gone = removed
            for task_id in ids:
                if removed - gone >= SWEEP_MOST:
                    break
                task = self.store.task(project.id, task_id)
                if task is None or not self._complete(task):
                    continue
                ended = [j.ended_at for j in self.scheduler.tasks.run_jobs(task.current).values()]
                if max((e for e in ended if e), default=task.created_at) < cutoff:
                    self.store.change(partial(table.delete_task, task=task))
                    removed += 1
        if removed:
            _log.info("tasks_expired", removed=removed)
        for more in self.also_sweep:
            more()
        return removed

    def days_for(self, project: Project) -> int:
        """How many days the project's tasks are kept after they end (0: until deleted)."""
        return self._days(project)

    def _days(self, project: Project) -> int:
        return project.keep_days if project.keep_days is not None else self.keep_days

    def _tasks(self, project: Project) -> list[Task]:
        ids = self.store.look(
            lambda t: table.oldest_tasks(t, project.id, created_before=float("inf"), limit=10**9)
        )
        return [t for i in ids if (t := self.store.task(project.id, i)) is not None]

    def _completed(self, event: events.TaskCompleted) -> None:
        task = self.store.task(event.project, event.task)
        if task is None or not task.deleting or event.run != task.current.number:
            return
        self.store.change(lambda t: table.delete_task(t, task))
        _log.info("task_deleted", project=event.project, task=event.task)
        project = self.store.project(event.project)
        if project is not None and project.deleting and not self._tasks(project):
            self._remove_project(project)

    def _remove_project(self, project: Project) -> None:
        for forget in self.forget:
            forget(project)
        self.store.change(lambda t: table.delete_project(t, project))
        _log.info("project_deleted", project=project.id, name=project.name)
