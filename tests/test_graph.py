"""The graph rules of a task's jobs: checks, the old roles as a graph, and what runs when."""

from __future__ import annotations

import pytest

from asphalt.errors import BadRequest
from asphalt.model.graph import (
    MAX_JOBS,
    Node,
    When,
    check,
    cycle,
    decide,
    depths,
    downstream,
    outcome,
    roles_as_graph,
)

DIAMOND = {
    "a": Node(),
    "b": Node(needs=("a",)),
    "c": Node(needs=("a",)),
    "d": Node(needs=("b", "c")),
}


def test_a_diamond_passes_and_is_drawn_in_three_columns() -> None:
    check(DIAMOND)
    assert depths(DIAMOND) == {"a": 0, "b": 1, "c": 1, "d": 2}
    assert downstream(DIAMOND, "a") == ["b", "c", "d"]
    assert downstream(DIAMOND, "b") == ["d"] and downstream(DIAMOND, "d") == []


def test_a_cycle_is_refused_naming_the_jobs_in_it() -> None:
    jobs = {**DIAMOND, "a": Node(needs=("d",))}
    assert cycle(jobs) is not None and set(cycle(jobs) or ()) >= {"a", "d"}
    with pytest.raises(BadRequest) as refused:
        check(jobs)
    assert "cycle" in refused.value.message and "a" in refused.value.message
    assert refused.value.field is not None and refused.value.field.endswith(".needs")
    with pytest.raises(BadRequest, match="cycle: x -> x"):
        check({"x": Node(needs=("x",))})


def test_a_need_that_names_no_job_and_a_bad_name_are_refused() -> None:
    with pytest.raises(BadRequest) as refused:
        check({"a": Node(needs=("nope",))})
    assert refused.value.field == "jobs.a.needs" and "'nope'" in refused.value.message
    with pytest.raises(BadRequest) as refused:
        check({"no spaces": Node()})
    assert refused.value.field == "jobs.no spaces"
    with pytest.raises(BadRequest):
        check({"x" * 65: Node()})


def test_jobs_added_later_may_need_jobs_that_exist_and_too_many_are_refused() -> None:
    check({"e": Node(needs=("d",))}, existing=DIAMOND)
    with pytest.raises(BadRequest, match="cycle"):
        check({"a": Node(needs=("e",)), "e": Node(needs=("d",))}, existing=DIAMOND)
    check({f"j{i}": Node() for i in range(MAX_JOBS)})
    with pytest.raises(BadRequest, match=f"at most {MAX_JOBS}"):
        check({f"j{i}": Node() for i in range(MAX_JOBS + 1)})


def test_a_long_chain_is_checked_without_recursion() -> None:
    chain = {f"j{i}": Node(needs=(f"j{i - 1}",) if i else ()) for i in range(MAX_JOBS)}
    check(chain)
    assert depths(chain)[f"j{MAX_JOBS - 1}"] == MAX_JOBS - 1


def test_the_four_roles_are_the_graph_they_always_were() -> None:
    graph = roles_as_graph(["main", "success", "failure", "after"])
    assert graph["success"] == Node(needs=("main",), when=When.SUCCESS)
    assert graph["failure"] == Node(needs=("main",), when=When.FAILURE)
    assert graph["after"] == Node(needs=("main", "success", "failure"), when=When.ALWAYS)
    assert roles_as_graph(["main", "after"])["after"].needs == ("main",)
    check(graph)


@pytest.mark.parametrize(
    ("when", "ended", "runs"),
    [
        (When.SUCCESS, {"b": "succeeded", "c": "succeeded"}, True),
        (When.SUCCESS, {"b": "succeeded", "c": "failed"}, False),
        (When.SUCCESS, {"b": "skipped", "c": "succeeded"}, False),
        (When.FAILURE, {"b": "succeeded", "c": "timed_out"}, True),
        (When.FAILURE, {"b": "succeeded", "c": "succeeded"}, False),
        (When.FAILURE, {"b": "skipped", "c": "succeeded"}, False),
        (When.ALWAYS, {"b": "lost", "c": "skipped"}, True),
    ],
)
def test_a_job_runs_or_is_skipped_by_its_when(
    when: When, ended: dict[str, str], runs: bool
) -> None:
    reason = decide(Node(needs=("b", "c"), when=when), ended)
    assert (reason is None) is runs
    if not runs:
        assert reason is not None and ("b" in reason or "c" in reason)


def test_the_outcome_is_failed_when_any_job_that_ran_did_not_succeed() -> None:
    assert outcome(["succeeded", "skipped"], cancelled=False) == "succeeded"
    assert outcome(["succeeded", "failed", "succeeded"], cancelled=False) == "failed"
    assert outcome(["cancelled"], cancelled=True) == "cancelled"
