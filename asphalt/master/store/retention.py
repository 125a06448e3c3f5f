"""Removing tasks from the store: a task with every run's jobs, their attempts' output, their
secrets and its callback's deliveries; and finding a project's oldest tasks, for the keep-days
sweep. LMDB reuses the pages that are freed."""

from __future__ import annotations

import struct

from asphalt.master.store import hooks, keys, records
from asphalt.master.store.migrations import Tables
from asphalt.model.hooks import callback_hook
from asphalt.model.records import Project, Task


def delete_task(tables: Tables, task: Task) -> None:
    for run in task.runs:
        for job_id in run.jobs.values():
            key = job_id.encode()
            for table in ("jobs", "active", "secrets"):
                if tables.get(table, key) is not None:
                    tables.delete(table, key)
            every_attempt = key + keys.SEP
            for table in ("output", "outmeta", "artifacts", "artifact_data", "swarmer_results"):
                for found in list(tables.keys(table, every_attempt)):
                    tables.delete(table, found)
    if task.callback is not None:  # what was still to be sent of it is not sent
        hooks.delete_deliveries(tables, callback_hook(task.project, task.id))
    key = keys.task_key(task.project, task.id)
    tables.delete("tasks", key)
    tables.delete("task_order", keys.order_key(task))
    for table in ("deleting", "swarmer"):
        if tables.get(table, key) is not None:
            tables.delete(table, key)


def oldest_tasks(tables: Tables, project: str, *, created_before: float, limit: int) -> list[str]:
    """Ids of the project's tasks made before `created_before`, oldest first."""
    prefix = project.encode() + keys.SEP
    found: list[str] = []
    for key in tables.keys("task_order", prefix):
        created_ns = struct.unpack(">Q", key[len(prefix) : len(prefix) + 8])[0]
        if created_ns / 1e9 >= created_before or len(found) >= limit:
            break
        found.append(key[len(prefix) + 8 :].decode())
    return found


def save_project(tables: Tables, project: Project) -> None:
    tables.put("projects", project.id.encode(), records.pack(project))


def save_task(tables: Tables, task: Task) -> None:
    """The task record alone (marked for deletion): no job of it changes with it. A task marked
    is also listed apart, so a master that stops before removing it finds it again."""
    key = keys.task_key(task.project, task.id)
    tables.put("tasks", key, records.pack(task))
    if task.deleting:
        tables.put("deleting", key, b"")


def unmark(tables: Tables, project: str, task: str) -> None:
    tables.delete("deleting", keys.task_key(project, task))


def marked_tasks(tables: Tables) -> list[tuple[str, str]]:
    """(project, task) of every task marked for deletion and not removed yet."""
    found = []
    for key in tables.keys("deleting", b""):
        project, _, task = key.partition(keys.SEP)
        found.append((project.decode(), task.decode()))
    return found


def delete_project(tables: Tables, project: Project) -> None:
    """The project's record and names (its tasks, hooks and schedules are gone already)."""
    for table, key in (("projects", project.id), ("names", project.name)):
        if tables.get(table, key.encode()) is not None:
            tables.delete(table, key.encode())
