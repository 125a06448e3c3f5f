"""User input is checked field by field, and every error says which field and how to fix it."""

from __future__ import annotations

from typing import Any

import pytest

from asphalt.errors import BadRequest
from asphalt.master.core.inputs import (
    TokenInput,
    parse_limit,
    parse_project,
    parse_task,
    parse_token,
)
from asphalt.model import bodies
from asphalt.model.records import Role, Scope
from asphalt.wire import field_names


def test_a_bare_job_is_shorthand_for_a_task_with_only_main() -> None:
    task = parse_task({"id": "abc", "action": "make test", "container": "ruby:3", "timeout": 600})
    assert task.id == "abc" and list(task.jobs) == [Role.MAIN]
    main = task.jobs[Role.MAIN]
    assert (main.action, main.container, main.runtime, main.timeout) == (
        "make test",
        "ruby:3",
        "docker",
        600.0,
    )


def test_runtime_defaults_to_host_without_a_container() -> None:
    assert parse_task({"action": "true"}).jobs[Role.MAIN].runtime == "host"


def test_env_values_may_be_numbers_and_types_a_single_string() -> None:
    job = parse_task({"action": "true", "env": {"N": 3, "ON": True}, "types": "gpu"}).jobs[
        Role.MAIN
    ]
    assert dict(job.env) == {"N": "3", "ON": "true"} and job.types == ("gpu",)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], None),
        ({}, "jobs"),
        ({"jobs": {"success": {"action": "x"}}}, "jobs.main"),
        ({"jobs": {"main": {"action": ""}}}, "jobs.main.action"),
        ({"jobs": {"main": {"action": 5}}}, "jobs.main.action"),
        ({"jobs": {"main": {"acton": "x"}}}, "jobs.main.acton"),
        ({"jobs": {"main": {"action": "x"}, "no space": {"action": "x"}}}, "jobs.no space"),
        ({"jobs": {"a": {"action": "x", "needs": ["b"]}}}, "jobs.a.needs"),
        ({"jobs": {"a": {"action": "x", "needs": "a"}}}, "jobs.a.needs"),
        ({"jobs": {"a": {"action": "x", "needs": [1]}}}, "jobs.a.needs"),
        ({"jobs": {"a": {"action": "x", "when": "sometimes"}}}, "jobs.a.when"),
        ({"jobs": {"success": {"action": "x"}}}, "jobs.main"),
        ({"jobs": {}}, "jobs"),
        ({"action": "x", "needs": ["a"]}, "needs"),
        ({"jobs": {"main": {"action": "x", "timeout": "10"}}}, "jobs.main.timeout"),
        ({"jobs": {"main": {"action": "x", "timeout": -1}}}, "jobs.main.timeout"),
        ({"jobs": {"main": {"action": "x", "timeout": True}}}, "jobs.main.timeout"),
        ({"jobs": {"main": {"action": "x", "env": ["A=1"]}}}, "jobs.main.env"),
        ({"jobs": {"main": {"action": "x", "env": {"1A": "x"}}}}, "jobs.main.env.1A"),
        ({"jobs": {"main": {"action": "x", "env": {"A": None}}}}, "jobs.main.env.A"),
        ({"jobs": {"main": {"action": "x", "types": [1]}}}, "jobs.main.types"),
        ({"jobs": {"main": {"action": "x", "runtime": "podman"}}}, "jobs.main.runtime"),
        ({"jobs": {"main": {"action": "x", "runtime": "docker"}}}, "jobs.main.container"),
        ({"jobs": {"main": {"action": "x", "container": "a b"}}}, "jobs.main.container"),
        ({"id": "has space", "action": "x"}, "id"),
        ({"id": 7, "action": "x"}, "id"),
        ({"jobs": "main"}, "jobs"),
        ({"action": "x", "jobz": 1}, "jobz"),
        ({"action": "x", "timeout": "soon"}, "timeout"),
        ({"name": "nl\n", "action": "x", "id": "nl\n"}, "name"),
        ({"id": "nl\n", "action": "x"}, "id"),
        ({"jobs": {"main": {"action": "x", "env": {"FOO\n": "x"}}}}, "jobs.main.env.FOO\n"),
    ],
)
def test_bad_task_input_names_the_field(body: Any, field: str | None) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_task(body)
    assert caught.value.field == field
    assert caught.value.message


def test_project_needs_a_valid_name() -> None:
    assert parse_project({"name": "web"}).name == "web"
    for body, field in (
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "a/b"}, "name"),
        ({"name": "w", "x": 1}, "x"),
    ):
        with pytest.raises(BadRequest) as caught:
            parse_project(body)
        assert caught.value.field == field


def test_limit_is_bounded() -> None:
    assert parse_limit(None) == 50 and parse_limit("10") == 10
    for raw in ("0", "-1", "x", "100000"):
        with pytest.raises(BadRequest):
            parse_limit(raw)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"jobs": {"main": {"acton": "x"}}}, "unknown field 'acton'; allowed here: action, "),
        ({"action": "x", "timeout": "10"}, "timeout must be a number of seconds above 0"),
        ({"action": "x", "retries": 1.5}, "retries must be a whole number from 0 to 100"),
        ({"action": "x", "backoff": float("inf")}, "backoff must be seconds from 0 to 3600"),
        ({"jobs": {"a": {"action": "x", "needs": [1]}}}, "jobs.a.needs must be a list of job"),
        ({"jobs": {"a": {"action": "x", "when": "never"}}}, "jobs.a.when must be one of success"),
        ({"jobs": {"a": {}}}, "jobs.a.action is required; it must be a command line"),
        ({"jobs": {"a": []}}, "jobs.a must be a JSON object"),
        ({"jobs": []}, "jobs must be an object of job names to jobs"),
        ({"action": "x", "types": ["ok", "not ok"]}, "types must be a list of type names, e.g."),
        ({"action": "x", "ids": "t"}, "unknown field 'ids'; allowed here: action, container, "),
    ],
)
def test_the_error_says_how_to_fix_the_field(body: Any, says: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_task(body)
    assert caught.value.message.startswith(says)
    assert "`" not in caught.value.message and "regex" not in caught.value.message


def test_a_bare_job_lists_the_tasks_id_among_its_fields() -> None:
    """A bare job is a whole task: the id beside it is one of the fields an error offers."""
    with pytest.raises(BadRequest, match=r"allowed here: action, .*, id, callback$"):
        parse_task({"action": "x", "ids": "t"})
    assert parse_task({"action": "x", "id": "t"}).id == "t"


def test_every_field_a_person_sends_has_words_for_its_errors() -> None:
    """bodies.HINTS is the table of wording: a field without an entry would answer in
    msgspec's terms ("Expected `int` >= 0")."""
    kinds = (bodies.ProjectBody, bodies.JobBody, bodies.TaskBody, bodies.TokenBody)
    fields = {name for kind in kinds for name in field_names(kind)}
    assert fields <= set(bodies.HINTS), fields - set(bodies.HINTS)


def test_tokens_are_read_from_their_body() -> None:
    assert parse_token({"name": "ci", "scope": "submit", "projects": ["web", "web"]}) == (
        TokenInput(name="ci", scope=Scope.SUBMIT, projects=("web",))
    )
    for body, field in (
        ({"name": "ci", "scope": "root"}, "scope"),
        ({"name": "ci", "projects": "web"}, "projects"),
        ({"name": "ci", "scope": "admin", "projects": ["web"]}, "projects"),
        ({"scope": "read"}, "name"),
        ({"name": "ci", "x": 1}, "x"),
    ):
        with pytest.raises(BadRequest) as caught:
            parse_token(body)
        assert caught.value.field == field
