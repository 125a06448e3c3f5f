"""The LMDB store, for real, in a temp dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from asphalt.errors import Conflict, StoreFull, Unavailable
from asphalt.master.store import Store
from asphalt.model.records import (
    Job,
    JobInput,
    JobState,
    Project,
    Run,
    Task,
    TransitionError,
    check_transition,
)
from asphalt.wire import replace


def _task(tid: str, at: float, project: str = "p1") -> tuple[Task, list[Job]]:
    job = Job(
        id=f"j-{tid}",
        project=project,
        task=tid,
        run=1,
        name="main",
        spec=JobInput(action="true", env={"A": "1"}, types=("gpu",)),
        created_at=at,
    )
    return Task(
        id=tid,
        project=project,
        created_at=at,
        runs=(Run(number=1, created_at=at, jobs={"main": job.id}),),
    ), [job]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "store")
    yield s
    s.close()


def test_projects_are_found_by_id_or_name_and_names_are_unique(store: Store) -> None:
    store.create_project(Project(id="p1", name="web", created_at=1.0))
    assert (
        store.project("p1") == store.project("web") == Project(id="p1", name="web", created_at=1.0)
    )
    with pytest.raises(Conflict, match="already called 'web'"):
        store.create_project(Project(id="p2", name="web", created_at=2.0))
    assert store.project("nope") is None


def test_tasks_list_newest_first_and_paginate(store: Store) -> None:
    for i in range(7):
        store.create_task(*_task(f"t{i}", 100.0 + i))
    store.create_task(*_task("other", 200.0, project="p2"))
    first = store.tasks("p1", limit=3)
    assert [t.id for t in first] == ["t6", "t5", "t4"]
    second = store.tasks("p1", limit=3, before=first[-1])
    assert [t.id for t in second] == ["t3", "t2", "t1"]
    assert [t.id for t in store.tasks("p1", limit=3, before=second[-1])] == ["t0"]
    assert [t.id for t in store.tasks("p2", limit=10)] == ["other"]
    with pytest.raises(Conflict):
        store.create_task(*_task("t1", 300.0))


def test_records_round_trip_and_active_index_follows_state(store: Store) -> None:
    task, jobs = _task("t", 1.0)
    store.create_task(task, jobs)
    assert store.job("j-t") == jobs[0]
    assert [j.id for j in store.active_jobs()] == ["j-t"]
    running = jobs[0].to(JobState.RUNNING, attempt=1, worker="w")
    done = running.to(JobState.SUCCEEDED, status=0)
    store.save(jobs=[done])
    assert store.job("j-t") == done
    assert list(store.active_jobs()) == []
    again = done.requeued()
    store.save(jobs=[again])
    assert store.job("j-t").history[0].state is JobState.SUCCEEDED  # type: ignore[union-attr]


def test_output_is_appended_once_per_offset_and_read_from_any_point(store: Store) -> None:
    assert store.append_output("j", 1, 0, b"hello ", cap=1000) == 6
    assert store.append_output("j", 1, 0, b"hello ", cap=1000) == 6  # resent: dropped
    assert store.append_output("j", 1, 3, b"lo world", cap=1000) == 11  # overlaps: the rest kept
    assert store.output("j", 1) == b"hello world"
    assert store.output("j", 1, 8) == b"rld"
    assert store.output("j", 1, 6) == b"world"
    assert store.output("j", 2) == b""
    with pytest.raises(Conflict):
        store.append_output("j", 1, 50, b"gap", cap=1000)


def test_output_over_the_cap_is_cut_with_a_visible_marker(store: Store) -> None:
    store.append_output("j", 1, 0, b"x" * 8, cap=10)
    store.append_output("j", 1, 8, b"y" * 8, cap=10)
    store.append_output("j", 1, 16, b"z" * 8, cap=10)
    out = store.output("j", 1)
    assert out.startswith(b"xxxxxxxxyy\n[asphalt: output cut at 10 bytes")
    assert b"z" not in out


def test_everything_survives_closing_and_reopening(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    store.create_project(Project(id="p1", name="web", created_at=1.0))
    store.create_task(*_task("t", 1.0))
    store.append_output("j-t", 1, 0, b"out", cap=100)
    store.close()
    store = Store(tmp_path / "s")
    assert store.project("web") is not None
    assert store.task("p1", "t") is not None
    assert store.output("j-t", 1) == b"out"
    store.close()


def test_a_second_master_on_the_same_data_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    with pytest.raises(Unavailable, match="another asphalt master"):
        Store(tmp_path / "s")
    store.close()


def test_a_full_store_is_a_clear_error_and_keeps_what_it_had(tmp_path: Path) -> None:
    store = Store(tmp_path / "s", map_size=256 << 10)
    store.create_project(Project(id="p1", name="web", created_at=1.0))
    with pytest.raises(StoreFull):
        for i in range(1000):
            store.append_output("j", 1, i * 4096, b"x" * 4096, cap=1 << 30)
    assert store.project("web") is not None
    store.close()


def test_a_job_moves_only_along_the_transition_table() -> None:
    _, (job,) = _task("t", 1.0)
    with pytest.raises(TransitionError, match="cannot go from queued to succeeded"):
        check_transition(job, job.to(JobState.SUCCEEDED))
    with pytest.raises(TransitionError, match="cannot start running"):
        check_transition(None, job.to(JobState.RUNNING))
    check_transition(job, job.to(JobState.RUNNING))
    assert replace(job, state=JobState.SKIPPED).requeued().state is JobState.QUEUED
