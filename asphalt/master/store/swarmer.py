"""The Swarmer tables: project, id -> a Swarmer job (from its submit on), and job, attempt -> what
that attempt's in-container client reported; written through `Store.change`, removed with the
task (retention.py)."""

from __future__ import annotations

from asphalt.master.store import keys, records
from asphalt.master.store.migrations import Tables
from asphalt.model.swarmer import Reported, SwarmerJob


def put(tables: Tables, job: SwarmerJob) -> None:
    tables.put("swarmer", keys.task_key(job.project, job.id), records.pack(job))


def get(tables: Tables, project: str, job_id: str) -> SwarmerJob | None:
    raw = tables.get("swarmer", keys.task_key(project, job_id))
    return records.decode(raw, SwarmerJob) if raw is not None else None


def delete(tables: Tables, project: str, job_id: str) -> None:
    tables.delete("swarmer", keys.task_key(project, job_id))


def report(tables: Tables, job_id: str, attempt: int, reported: Reported) -> None:
    tables.put("swarmer_results", keys.output_prefix(job_id, attempt), records.pack(reported))


def reported(tables: Tables, job_id: str, attempt: int) -> Reported | None:
    raw = tables.get("swarmer_results", keys.output_prefix(job_id, attempt))
    return records.decode(raw, Reported) if raw is not None else None


def drop_project(tables: Tables, project: str) -> None:
    """Every Swarmer job of the project (those with a task went with it)."""
    for key in list(tables.keys("swarmer", project.encode() + keys.SEP)):
        tables.delete("swarmer", key)
