"""Turns request bodies (model/bodies.py, read field by field) into validated inputs: the rules
between fields, the roles' shorthand, the graph checked as a whole; or a BadRequest that names
the field and the fix."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from asphalt.errors import BadRequest
from asphalt.limits import parse_limits
from asphalt.model import bodies, graph
from asphalt.model.bodies import (
    BareJobBody,
    BareTaskBody,
    BareTemplateJobBody,
    BareTemplateTaskBody,
    CallbackBody,
    JobBody,
    JobsBody,
    ProjectBody,
    TaskBody,
    TemplateJobBody,
    TokenBody,
)
from asphalt.model.graph import When
from asphalt.model.records import Callback, JobInput, Scope
from asphalt.model.templates import Template, merged_args
from asphalt.wire import UNSET

ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The template a job names, by name and version (None: the newest); a 400 or 404 naming
# `field` when there is none.
FindTemplate = Callable[[str, int | None, str], Template]


def _no_templates(name: str, version: int | None, field: str) -> Template:
    raise BadRequest("templates cannot be used here", field=field)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectInput:
    name: str
    id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskInput:
    id: str | None
    jobs: dict[str, JobInput]  # by name, in the order they run in when nothing else decides
    secrets: dict[str, dict[str, str]]  # each job's secret values, kept apart from the job
    callback: Callback | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobsInput:
    """Jobs added to a task while its run goes on."""

    jobs: dict[str, JobInput]
    secrets: dict[str, dict[str, str]]


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def parse_project(body: Any) -> ProjectInput:
    given = bodies.read(body, ProjectBody)
    return ProjectInput(name=given.name, id=given.id)


def parse_task(body: Any, templates: FindTemplate = _no_templates) -> TaskInput:
    """A task body: a graph of jobs, a bare job, or a bare template job; `templates` finds the
    templates its jobs name."""
    body = _object(body)
    if "jobs" not in body and "template" in body:
        launch = bodies.read(body, BareTemplateTaskBody)
        job, values = _template_job(launch, "", graph.Node(), templates)
        return TaskInput(
            id=launch.id,
            jobs={"main": job},
            secrets={"main": values},
            callback=_callback(launch.callback),
        )
    if "jobs" not in body:
        if "action" not in body:
            raise BadRequest(
                'a task needs jobs: {"jobs": {"main": {"action": "make test"}}} '
                'or a bare job {"action": "make test"}',
                field="jobs",
            )
        # Errors name the fields as the user sent them: "timeout", not "jobs.main.timeout".
        bare = bodies.read(body, BareTaskBody)
        job, values = _job(bare, "", graph.Node())
        callback = _callback(bare.callback)
        return TaskInput(
            id=bare.id, jobs={"main": job}, secrets={"main": values}, callback=callback
        )
    given = bodies.read(body, TaskBody)
    jobs, secrets = _jobs(given.jobs, templates, roles=True)
    return TaskInput(id=given.id, jobs=jobs, secrets=secrets, callback=_callback(given.callback))


def _callback(given: str | CallbackBody | None) -> Callback | None:
    if given is None or isinstance(given, str):
        return Callback(url=given) if given else None
    return Callback(url=given.url, secret=given.secret)


def parse_jobs(
    body: Any, existing: Mapping[str, graph.Node], templates: FindTemplate = _no_templates
) -> JobsInput:
    """Jobs to add to a running task, needs among its jobs and these (whether one the run has
    already is the same job is for Tasks.add_jobs to say)."""
    given = bodies.read(body, JobsBody)
    jobs, secrets = _jobs(given.jobs, templates, roles=False, existing=existing)
    return JobsInput(jobs=jobs, secrets=secrets)


def _jobs(
    given: dict[str, Any],
    templates: FindTemplate,
    *,
    roles: bool,
    existing: Mapping[str, graph.Node] | None = None,
) -> tuple[dict[str, JobInput], dict[str, dict[str, str]]]:
    """A map of job names to jobs, each in its place in the graph, checked as a whole.

    In a new task the four role names are shorthand (DESIGN.md §1) for the needs and when they
    always had, unless the job gives its own.
    """
    if not given:
        raise BadRequest('jobs must name at least one job, e.g. {"main": {...}}', field="jobs")
    for name in given:
        if not graph.NAME_RE.fullmatch(name):
            raise BadRequest(f"job name {name!r} must be {graph.NAME_RULE}", field=f"jobs.{name}")
    names = list(given)
    if roles and set(names) <= set(graph.ROLES):
        names = [role for role in graph.ROLES if role in given]  # main first, as always
    shorthand = graph.roles_as_graph(names) if roles else {}
    if roles and "main" not in given and set(shorthand) & {"success", "failure"}:
        raise BadRequest(
            "jobs.main is required: success and failure react to it", field="jobs.main"
        )
    jobs: dict[str, JobInput] = {}
    secrets: dict[str, dict[str, str]] = {}
    for name in names:
        where = f"jobs.{name}"
        place = shorthand.get(name, graph.Node())
        if isinstance(given[name], dict) and "template" in given[name]:
            launch = bodies.read(given[name], TemplateJobBody, at=where)
            jobs[name], secrets[name] = _template_job(launch, where, place, templates)
            continue
        body = bodies.read(given[name], JobBody, at=where)
        jobs[name], secrets[name] = _job(body, where, place)
    graph.check({n: j.node for n, j in jobs.items()}, existing=existing)
    return jobs, secrets


def _at(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _job(body: BareJobBody, where: str, default: graph.Node) -> tuple[JobInput, dict[str, str]]:
    """The job a body describes, and its secrets' values (kept apart from it)."""
    runtime = runtime_of(body.runtime, body.container, where)
    no_artifacts(runtime, body.logs_dir, body.results_dir, where)
    env, secrets = _env_and_secrets(body.env, body.secrets, where)
    node = _node(body, default)
    job = JobInput(
        action=_action(body.action, _at(where, "action")),
        container=body.container,
        env=env,
        secrets=tuple(sorted(secrets)),
        limits=parse_limits(body.limits, _at(where, "limits")),
        timeout=body.timeout,
        retries=body.retries or 0,
        backoff=10.0 if body.backoff is None else body.backoff,
        types=types_of(body.types),
        runtime=runtime,
        needs=node.needs,
        when=node.when,
        env_from_host=tuple(dict.fromkeys(body.env_from_host or ())),
        logs_dir=body.logs_dir,
        results_dir=body.results_dir,
    )
    return job, secrets


def runtime_of(runtime: str | None, container: str | None, where: str = "") -> str:
    """The runtime given, or docker with a container and else host; one that runs a container
    needs an image."""
    chosen = runtime or ("docker" if container else "host")
    if chosen != "host" and not container:
        raise BadRequest(
            f"{_at(where, 'container')} is required with runtime {chosen}: "
            'name an image, e.g. "alpine:3"',
            field=_at(where, "container"),
        )
    return chosen


def no_artifacts(runtime: str, logs: str | None, results: str | None, where: str = "") -> None:
    """Swarm jobs run on the swarm's nodes, where their worker cannot collect files."""
    if runtime == "swarm" and (logs or results):
        field = _at(where, "logs_dir" if logs else "results_dir")
        raise BadRequest(
            f"{field}: a swarm job runs on a node of the swarm's choosing, whose files are "
            "not collected; leave out logs_dir and results_dir, or use runtime docker",
            field=field,
        )


def _env_and_secrets(
    env_given: dict[str, Any] | None, secrets_given: dict[str, Any] | None, where: str
) -> tuple[dict[str, str], dict[str, str]]:
    env = _env(env_given, _at(where, "env"))
    secrets = _secrets(secrets_given, _at(where, "secrets"))
    both = sorted(set(env) & set(secrets))
    if both:
        field = _at(where, "secrets")
        raise BadRequest(f"{field}: {both[0]!r} is in env too; name it in one of them", field=field)
    return env, secrets


def types_of(given: str | list[str] | None) -> tuple[str, ...]:
    found = given if isinstance(given, list) else [given] if given else []
    return tuple(sorted(set(found)))


def _template_job(
    body: BareTemplateJobBody, where: str, default: graph.Node, templates: FindTemplate
) -> tuple[JobInput, dict[str, str]]:
    """The job a template makes with these arguments (checked, defaults filled in), and its
    secrets' values."""
    template = templates(body.template, body.version, _at(where, "template"))
    args = merged_args(template.args, body.args, _at(where, "args"))
    env, secrets = _env_and_secrets(body.env, body.secrets, where)
    node = _node(body, default)
    timeout = template.timeout
    if body.timeout is not None:
        timeout = body.timeout if timeout is None else min(timeout, body.timeout)
    job = JobInput(
        action=template.argv(args),
        container=template.container,
        env=env,
        secrets=tuple(sorted(secrets)),
        limits=template.limits,
        timeout=timeout,
        retries=body.retries or 0,
        backoff=10.0 if body.backoff is None else body.backoff,
        types=template.types,
        runtime=template.runtime,
        needs=node.needs,
        when=node.when,
        env_from_host=template.env_from_host,
        logs_dir=template.logs_dir,
        results_dir=template.results_dir,
        template=template.name,
        template_version=template.version,
        args=args,
        max_running=template.max_running,
    )
    return job, secrets


def _node(body: BareJobBody | BareTemplateJobBody, default: graph.Node) -> graph.Node:
    """Its place in the graph: what it gives, else its role's shorthand (a bare job: none)."""
    if not isinstance(body, JobBody | TemplateJobBody):
        return default
    needs = default.needs if body.needs is UNSET else body.needs
    when: When = default.when if body.when is UNSET else body.when
    return graph.Node(
        needs=tuple(dict.fromkeys([needs] if isinstance(needs, str) else needs)), when=when
    )


def _action(value: str | list[str], field: str) -> str | list[str]:
    given = value[0] if isinstance(value, list) and value else value
    if isinstance(given, str) and given.strip():
        return value
    raise BadRequest(
        f'{field} is required: a command line ("make test") or an argv list (["make", "test"])',
        field=field,
    )


def _env(value: dict[str, Any] | None, field: str) -> dict[str, str]:
    """Names to values: strings, or numbers and booleans written as they read in JSON."""
    env: dict[str, str] = {}
    for key, item in (value or {}).items():
        if not ENV_RE.fullmatch(key):
            raise BadRequest(
                f"{field}: {key!r} is not a valid variable name", field=f"{field}.{key}"
            )
        if isinstance(item, bool):
            item = "true" if item else "false"
        if not isinstance(item, str | int | float) or (isinstance(item, str) and "\0" in item):
            raise BadRequest(f"{field}.{key} must be a string or a number", field=f"{field}.{key}")
        env[key] = str(item)
    return env


def _secrets(value: dict[str, Any] | None, field: str) -> dict[str, str]:
    """A job's secrets: variables like env whose values are never shown (and masked)."""
    found = _env(value, field)
    for name, secret in found.items():
        if not secret:
            where_name = f"{field}.{name}"
            raise BadRequest(f"{where_name} is empty; a secret needs a value", field=where_name)
    return found


def whole(raw: str) -> bool:
    """Whether `raw` is a plain whole number (ASCII digits: "²" is a digit to str.isdigit)."""
    return raw.isascii() and raw.isdigit() and len(raw) <= 18


def parse_limit(raw: str | None, *, default: int = 50, most: int = 500) -> int:
    if raw is None:
        return default
    if not whole(raw) or not 1 <= int(raw) <= most:
        raise BadRequest(f"limit must be a whole number from 1 to {most}", field="limit")
    return int(raw)


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenInput:
    name: str
    scope: Scope
    projects: tuple[str, ...]


def parse_token(body: Any) -> TokenInput:
    given = bodies.read(body, TokenBody)
    if given.scope == "admin" and given.projects:
        raise BadRequest(
            "an admin token is for every project (it makes tokens and manages workers); "
            "give a read or submit token projects instead",
            field="projects",
        )
    return TokenInput(
        name=given.name, scope=Scope(given.scope), projects=tuple(dict.fromkeys(given.projects))
    )
