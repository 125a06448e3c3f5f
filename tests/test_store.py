"""The LMDB store, for real, in a temp dir."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from asphalt.errors import Conflict, StoreFull, Unavailable
from asphalt.master.store import GAP_MARKER, Store, keys, migrations, records
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
from asphalt.protocol import STDERR, STDOUT
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


def out(data: bytes) -> list[tuple[int, bytes]]:
    return [(STDOUT, data)]


def test_output_is_appended_once_per_offset_and_read_from_any_point(store: Store) -> None:
    assert store.append_output("j", 1, 0, out(b"hello "), cap=1000) == 6
    assert store.append_output("j", 1, 0, out(b"hello "), cap=1000) == 6  # resent: dropped
    assert store.append_output("j", 1, 3, out(b"lo world"), cap=1000) == 11  # the rest kept
    assert store.output("j", 1).data == b"hello world"
    assert store.output("j", 1, 8).data == b"rld"
    assert store.output("j", 1, 6) == (b"world", 11, 11)
    assert store.output("j", 2).data == b""
    assert store.output_received("j", 1) == 11
    with pytest.raises(Conflict):
        store.append_output("j", 1, 50, out(b"gap"), cap=1000)


def test_output_over_the_cap_keeps_its_start_and_its_end_around_one_marker(store: Store) -> None:
    store.append_output("j", 1, 0, out(b"x" * 8), cap=10)
    store.append_output("j", 1, 8, out(b"y" * 8), cap=10)
    store.append_output("j", 1, 16, out(b"z" * 8), cap=10)
    assert store.output("j", 1).data == b"xxxxx" + GAP_MARKER.format(dropped=14).encode() + b"z" * 5
    assert store.output_received("j", 1) == 24
    # A reader that was past the head and behind the end learns how much it missed.
    assert store.output("j", 1, 10) == (GAP_MARKER.format(dropped=9).encode() + b"z" * 5, 24, 24)
    assert store.output("j", 1, 21).data == b"zzz"


def test_stdout_and_stderr_are_kept_apart_and_interleaved(store: Store) -> None:
    pieces = [(STDOUT, b"compiling\n"), (STDERR, b"warning: x\n"), (STDOUT, b"done\n")]
    assert store.append_output("j", 1, 0, pieces, cap=1000) == 26
    assert store.output("j", 1).data == b"compiling\nwarning: x\ndone\n"
    assert store.output("j", 1, stream=STDERR) == (b"warning: x\n", 26, 21)
    assert store.output("j", 1, stream=STDOUT).data == b"compiling\ndone\n"
    assert store.output("j", 1, 12, stream=STDOUT).data == b"done\n"


def test_a_long_output_of_both_streams_keeps_each_ones_end(store: Store) -> None:
    received = 0
    for i in range(2000):
        line = (STDOUT, b"out %d\n" % i) if i % 3 else (STDERR, b"err %d\n" % i)
        received = store.append_output("j", 1, received, [line], cap=4000)
    kept = store.output("j", 1).data
    assert kept.startswith(b"err 0\nout 1\n") and kept.endswith(b"out 1999\n")
    assert kept.count(b"bytes of output dropped here") == 1
    assert 4000 < len(kept) < 4200
    assert store.output("j", 1, stream=STDERR).data.endswith(b"err 1998\n")
    assert b"out " not in store.output("j", 1, stream=STDERR).data


def test_everything_survives_closing_and_reopening(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    store.create_project(Project(id="p1", name="web", created_at=1.0))
    store.create_task(*_task("t", 1.0))
    store.append_output("j-t", 1, 0, out(b"out"), cap=100)
    store.close()
    store = Store(tmp_path / "s")
    assert store.project("web") is not None
    assert store.task("p1", "t") is not None
    assert store.output("j-t", 1).data == b"out"
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
            store.append_output("j", 1, i * 4096, out(b"x" * 4096), cap=1 << 30)
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


def test_output_cut_by_the_release_before_reads_its_end_after_the_upgrade(tmp_path: Path) -> None:
    """Schema 2 cut output at the cap and counted the rest: its pieces (keys without a stream)
    end at what was kept, and the length received was more."""
    store = Store(tmp_path / "s")
    prefix = keys.output_prefix("j", 1)
    kept = b"x" * 100 + b"\n[asphalt: output cut at 100 bytes; the rest of it is not kept]\n"

    def legacy(t: Any) -> None:
        t.put("output", prefix + struct.pack(">Q", 0), kept)
        t.put("outmeta", prefix, records.pack_value((5000, len(kept))))
        t.put("meta", migrations.VERSION_KEY, records.pack_value(2))

    store.change(legacy)
    store.close()
    store = Store(tmp_path / "s")
    try:
        assert store.output_received("j", 1) == len(kept)
        assert store.output("j", 1, len(kept) - 20).data == kept[-20:]  # its end, to show
        assert store.output("j", 1).data == kept
        assert store.output("j", 1, stream=STDOUT).data == kept  # no stream byte: stdout
    finally:
        store.close()
