"""Which reactions a run sets off (the four roles as the graph they are), and the task status
and outcome that follow."""

from __future__ import annotations

from asphalt.master.core.reactions import advance, environment
from asphalt.model.graph import roles_as_graph
from asphalt.model.records import Job, JobInput, JobState, Outcome, Role, TaskStatus, task_status
from asphalt.wire import replace


def _run(*roles: Role) -> dict[Role, Job]:
    graph = roles_as_graph(roles)
    return {
        role: Job(
            id=f"j-{role}",
            project="p",
            task="t",
            run=1,
            name=role,
            spec=JobInput(action="true", needs=graph[role].needs, when=graph[role].when),
            created_at=1.0,
            ready=role is Role.MAIN,
        )
        for role in roles
    }


def _ended(job: Job, state: JobState, status: int | None = None) -> Job:
    return job.to(JobState.RUNNING, attempt=1).to(state, status=status)


def test_success_follows_main_that_exited_zero_and_failure_is_skipped() -> None:
    jobs = _run(Role.MAIN, Role.SUCCESS, Role.FAILURE, Role.AFTER)
    main = _ended(jobs[Role.MAIN], JobState.SUCCEEDED, 0)
    changed = {j.name: j for j in advance({**jobs, Role.MAIN: main}, [main.name], 2.0)}
    assert changed[Role.SUCCESS].ready and changed[Role.SUCCESS].state is JobState.QUEUED
    assert changed[Role.FAILURE].state is JobState.SKIPPED
    assert Role.AFTER not in changed  # after waits for the success reaction


def test_every_other_end_of_main_sets_off_failure() -> None:
    for state in (JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELLED, JobState.LOST):
        jobs = _run(Role.MAIN, Role.SUCCESS, Role.FAILURE)
        main = _ended(jobs[Role.MAIN], state)
        changed = {j.name: j for j in advance({**jobs, Role.MAIN: main}, [main.name], 2.0)}
        assert changed[Role.FAILURE].ready, state
        assert changed[Role.SUCCESS].state is JobState.SKIPPED


def test_after_runs_at_once_when_there_is_no_matching_reaction() -> None:
    jobs = _run(Role.MAIN, Role.FAILURE, Role.AFTER)
    main = _ended(jobs[Role.MAIN], JobState.SUCCEEDED, 0)
    changed = {j.name: j for j in advance({**jobs, Role.MAIN: main}, [main.name], 2.0)}
    assert changed[Role.AFTER].ready and changed[Role.FAILURE].state is JobState.SKIPPED


def test_after_follows_the_reaction() -> None:
    jobs = _run(Role.MAIN, Role.SUCCESS, Role.AFTER)
    main = _ended(jobs[Role.MAIN], JobState.SUCCEEDED, 0)
    success = _ended(replace(jobs[Role.SUCCESS], ready=True), JobState.FAILED, 1)
    changed = advance({**jobs, Role.MAIN: main, Role.SUCCESS: success}, [success.name], 3.0)
    assert [(j.name, j.ready) for j in changed] == [(Role.AFTER, True)]


def test_task_status_and_outcome_follow_the_jobs() -> None:
    jobs = _run(Role.MAIN, Role.SUCCESS)
    assert task_status(jobs.values()) == (TaskStatus.WAITING, None)
    running = jobs[Role.MAIN].to(JobState.RUNNING)
    assert task_status([running, jobs[Role.SUCCESS]]) == (TaskStatus.RUNNING, None)
    main = _ended(jobs[Role.MAIN], JobState.SUCCEEDED, 0)
    ok = _ended(jobs[Role.SUCCESS], JobState.SUCCEEDED, 0)
    bad = _ended(jobs[Role.SUCCESS], JobState.FAILED, 2)
    assert task_status([main, ok]) == (TaskStatus.COMPLETE, Outcome.SUCCEEDED)
    assert task_status([main, bad]) == (TaskStatus.COMPLETE, Outcome.FAILED)
    cancelled = _ended(jobs[Role.MAIN], JobState.CANCELLED)
    skipped = jobs[Role.SUCCESS].to(JobState.SKIPPED)
    assert task_status([cancelled, skipped]) == (TaskStatus.COMPLETE, Outcome.CANCELLED)


def test_reactions_see_how_main_ended() -> None:
    jobs = _run(Role.MAIN, Role.FAILURE)
    main = _ended(jobs[Role.MAIN], JobState.FAILED, 3)
    env = environment(jobs[Role.FAILURE], {"main": main})
    assert env["ASPHALT_MAIN_STATE"] == "failed" and env["ASPHALT_MAIN_STATUS"] == "3"
    assert env["ASPHALT_TASK_ID"] == "t" and env["ASPHALT_PROJECT_ID"] == "p"
    assert "ASPHALT_MAIN_STATE" not in environment(main, {"main": main})
