"""The event seam: the one door publishes typed events, and subscribers hear of them only once
the store has committed the change (a real store in a temp dir, on a running loop)."""

from __future__ import annotations

from pathlib import Path

import pytest

from asphalt.master import events
from asphalt.master.core.lifecycle import Lifecycle
from asphalt.master.store import Store
from asphalt.model.records import Job, JobInput, JobState, Outcome, Run, Task, TransitionError
from asphalt.wire import replace


def _task() -> tuple[Task, list[Job]]:
    job = Job(
        id="j1",
        project="p",
        task="t",
        run=1,
        name="main",
        spec=JobInput(action="true"),
        created_at=1.0,
    )
    return Task(
        id="t",
        project="p",
        created_at=1.0,
        runs=(Run(number=1, created_at=1.0, jobs={"main": "j1"}),),
    ), [job]


async def test_events_come_after_the_commit_and_a_bad_subscriber_stops_nothing(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "store")
    bus = events.Events(store.after_commit)
    door = Lifecycle(store, bus)
    seen: list[str] = []

    def broken(event: events.JobQueued) -> None:
        raise RuntimeError("a subscriber with a bug")

    bus.subscribe(events.JobQueued, broken)
    bus.subscribe(events.JobQueued, lambda e: seen.append(f"queued {e.job.id}"))
    bus.subscribe(events.JobStarted, lambda e: seen.append(f"started {e.job.attempt}"))
    bus.subscribe(events.JobEnded, lambda e: seen.append(f"ended {e.job.state}"))
    bus.subscribe(events.TaskCompleted, lambda e: seen.append(f"task {e.outcome}"))
    task, (job,) = _task()
    door.create(task, [job])
    assert seen == []  # not yet committed: nobody has heard
    await store.flushed()
    assert seen == ["queued j1"]
    running = job.to(JobState.RUNNING, attempt=1)
    door.commit([running])
    door.commit([running.to(JobState.SUCCEEDED, status=0)])
    assert seen == ["queued j1"]
    await store.flushed()
    assert seen == ["queued j1", "started 1", "ended succeeded", f"task {Outcome.SUCCEEDED}"]
    with pytest.raises(TransitionError, match="from succeeded to running"):
        door.commit([running])  # an ended job runs again only once queued again
    await store.flushed()
    assert store.job("j1").state is JobState.SUCCEEDED  # type: ignore[union-attr]
    assert len(seen) == 4
    ended = store.job("j1")
    assert ended is not None
    door.commit([replace(ended, reason="its worker later reported failed")])  # a late result
    await store.flushed()
    assert len(seen) == 4  # an update after the end completes nothing again
    store.close()
