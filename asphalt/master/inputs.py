"""Turns user JSON into validated inputs, or a BadRequest that names the field and the fix."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from asphalt import graph
from asphalt.errors import BadRequest
from asphalt.graph import When
from asphalt.limits import parse_limits
from asphalt.model import JobInput, Scope

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RUNTIMES = ("host", "docker", "singularity")
JOB_FIELDS = (
    "action",
    "container",
    "env",
    "secrets",
    "limits",
    "timeout",
    "types",
    "runtime",
    "retries",
    "backoff",
    "needs",
    "when",
)
BARE_FIELDS = JOB_FIELDS[:-2]  # a bare job is the whole task: it needs nothing
MAX_RETRIES = 100
MAX_BACKOFF_S = 3600
MAX_TIMEOUT_S = 7 * 24 * 3600
NAME_RULE = "1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectInput:
    name: str
    id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskInput:
    id: str | None
    jobs: dict[str, JobInput]  # by name, in the order they run in when nothing else decides
    secrets: dict[str, dict[str, str]]  # each job's secret values, kept apart from the job


@dataclass(frozen=True, slots=True, kw_only=True)
class JobsInput:
    """Jobs added to a task while its run goes on."""

    jobs: dict[str, JobInput]
    secrets: dict[str, dict[str, str]]


def _object(body: Any, where: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        what = where if where else "the request body"
        raise BadRequest(f"{what} must be a JSON object", field=where or None)
    return body


def _unknown(body: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in body:
        if key not in allowed:
            raise BadRequest(
                f"unknown field {key!r}; allowed here: {', '.join(allowed)}",
                field=f"{where}.{key}" if where else key,
            )


def _name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise BadRequest(f"{field} must be {NAME_RULE}", field=field)
    return value


def parse_project(body: Any) -> ProjectInput:
    body = _object(body, "")
    _unknown(body, ("name", "id"), "")
    if "name" not in body:
        raise BadRequest('name is required, e.g. {"name": "web"}', field="name")
    pid = body.get("id")
    return ProjectInput(
        name=_name(body["name"], "name"), id=None if pid is None else _name(pid, "id")
    )


def parse_task(body: Any) -> TaskInput:
    body = _object(body, "")
    if "jobs" not in body:
        if "action" not in body:
            raise BadRequest(
                'a task needs jobs: {"jobs": {"main": {"action": "make test"}}} '
                'or a bare job {"action": "make test"}',
                field="jobs",
            )
        _unknown(body, ("id", *BARE_FIELDS), "")
        bare = {k: v for k, v in body.items() if k != "id"}
        # Errors name the fields as the user sent them: "timeout", not "jobs.main.timeout".
        return TaskInput(
            id=_task_id(body.get("id")),
            jobs={"main": parse_job(bare, "")},
            secrets={"main": _secrets(bare, "")},
        )
    _unknown(body, ("id", "jobs"), "")
    jobs, secrets = _jobs(body["jobs"], roles=True)
    return TaskInput(id=_task_id(body.get("id")), jobs=jobs, secrets=secrets)


def parse_jobs(body: Any, existing: dict[str, graph.Node]) -> JobsInput:
    """Jobs to add to a running task: names new to it, needs among its jobs and these."""
    body = _object(body, "")
    _unknown(body, ("jobs",), "")
    if "jobs" not in body:
        raise BadRequest(
            'jobs is required, e.g. {"jobs": {"more": {"action": "..."}}}', field="jobs"
        )
    jobs, secrets = _jobs(body["jobs"], roles=False, existing=existing)
    return JobsInput(jobs=jobs, secrets=secrets)


def _jobs(
    value: Any, *, roles: bool, existing: dict[str, graph.Node] | None = None
) -> tuple[dict[str, JobInput], dict[str, dict[str, str]]]:
    """A map of job names to jobs, each in its place in the graph, checked as a whole.

    In a new task the four role names are shorthand (DESIGN.md §1) for the needs and when they
    always had, unless the job gives its own.
    """
    given = _object(value, "jobs")
    if not given:
        raise BadRequest('jobs must name at least one job, e.g. {"main": {...}}', field="jobs")
    for name in given:
        if not graph.NAME_RE.fullmatch(name):
            raise BadRequest(f"job name {name!r} must be {graph.NAME_RULE}", field=f"jobs.{name}")
        if existing and name in existing:
            raise BadRequest(f"the task has a job {name!r} already", field=f"jobs.{name}")
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
        spec = parse_job(given[name], where, default=shorthand.get(name, graph.Node()))
        jobs[name] = spec
        secrets[name] = _secrets(given[name], where)
    graph.check({n: j.node for n, j in jobs.items()}, existing=existing)
    return jobs, secrets


def _task_id(value: Any) -> str | None:
    return None if value is None else _name(value, "id")


def _at(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def parse_job(body: Any, where: str, *, default: graph.Node | None = None) -> JobInput:
    body = _object(body, where)
    _unknown(body, JOB_FIELDS, where)
    container = _container(body.get("container"), _at(where, "container"))
    runtime = body.get("runtime") or ("docker" if container else "host")
    if runtime not in RUNTIMES:
        raise BadRequest(
            f"{_at(where, 'runtime')} must be one of {', '.join(RUNTIMES)}",
            field=_at(where, "runtime"),
        )
    if runtime != "host" and not container:
        raise BadRequest(
            f"{_at(where, 'container')} is required with runtime {runtime}: "
            'name an image, e.g. "alpine:3"',
            field=_at(where, "container"),
        )
    env = _env(body.get("env"), _at(where, "env"))
    secrets = _secrets(body, where)
    both = sorted(set(env) & set(secrets))
    if both:
        field = _at(where, "secrets")
        raise BadRequest(f"{field}: {both[0]!r} is in env too; name it in one of them", field=field)
    return JobInput(
        action=_action(body.get("action"), _at(where, "action")),
        container=container,
        env=env,
        secrets=tuple(sorted(secrets)),
        limits=parse_limits(body.get("limits"), _at(where, "limits")),
        timeout=_timeout(body.get("timeout"), _at(where, "timeout")),
        retries=_count(body.get("retries"), _at(where, "retries")),
        backoff=_backoff(body.get("backoff"), _at(where, "backoff")),
        types=_types(body.get("types"), _at(where, "types")),
        runtime=runtime,
        needs=_needs(body, where, default),
        when=_when(body, where, default),
    )


def _needs(body: dict[str, Any], where: str, default: graph.Node | None) -> tuple[str, ...]:
    if "needs" not in body:
        return default.needs if default else ()
    value, field = body["needs"], _at(where, "needs")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f'{field} must be a list of job names, e.g. ["build"]', field=field)
    return tuple(dict.fromkeys(value))


def _when(body: dict[str, Any], where: str, default: graph.Node | None) -> When:
    if "when" not in body:
        return default.when if default else When.SUCCESS
    value, field = body["when"], _at(where, "when")
    if value not in tuple(When):
        raise BadRequest(
            f"{field} must be one of {', '.join(When)} (run when every job it needs succeeded, "
            "when one did not, or in any case)",
            field=field,
        )
    return When(value)


def _action(value: Any, field: str) -> str | list[str]:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value) and value[0]:
        return list(value)
    raise BadRequest(
        f'{field} is required: a command line ("make test") or an argv list (["make", "test"])',
        field=field,
    )


def _container(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
        raise BadRequest(f'{field} must be an image name such as "ruby:3"', field=field)
    return value


def _env(value: Any, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(
            f'{field} must be an object of names to values, e.g. {{"CI": "1"}}', field=field
        )
    env: dict[str, str] = {}
    for key, item in value.items():
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


def _secrets(body: dict[str, Any], where: str) -> dict[str, str]:
    """A job's secrets: variables like env whose values are never shown (and masked)."""
    field = _at(where, "secrets")
    value = body.get("secrets")
    if value is not None and not isinstance(value, dict):
        example = '{"TOKEN": "..."}'
        raise BadRequest(
            f"{field} must be an object of names to values, e.g. {example}", field=field
        )
    found = _env(value, field)
    for name, secret in found.items():
        if not secret:
            where_name = f"{field}.{name}"
            raise BadRequest(f"{where_name} is empty; a secret needs a value", field=where_name)
    return found


def _timeout(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= MAX_TIMEOUT_S
    ):
        raise BadRequest(
            f"{field} must be a number of seconds above 0 and at most {MAX_TIMEOUT_S}", field=field
        )
    return float(value)


def _count(value: Any, field: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RETRIES:
        raise BadRequest(f"{field} must be a whole number from 0 to {MAX_RETRIES}", field=field)
    return value


def _backoff(value: Any, field: str) -> float:
    if value is None:
        return 10.0
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value <= MAX_BACKOFF_S
    ):
        raise BadRequest(f"{field} must be seconds from 0 to {MAX_BACKOFF_S}", field=field)
    return float(value)


def _types(value: Any, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(
        isinstance(v, str) and NAME_RE.match(v) for v in value
    ):
        raise BadRequest(f'{field} must be a list of type names, e.g. ["gpu"]', field=field)
    return tuple(sorted(set(value)))


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


TOKEN_SCOPES = (Scope.READ, Scope.SUBMIT, Scope.ADMIN)


def parse_token(body: Any) -> TokenInput:
    body = _object(body, "")
    _unknown(body, ("name", "scope", "projects"), "")
    if "name" not in body:
        raise BadRequest('name is required, e.g. {"name": "ci", "scope": "submit"}', field="name")
    scope = body.get("scope", "read")
    if scope not in TOKEN_SCOPES:
        raise BadRequest(
            f"scope must be one of {', '.join(TOKEN_SCOPES)} (read may GET; submit may also "
            "create tasks, rerun and cancel; admin may do everything)",
            field="scope",
        )
    projects = body.get("projects", [])
    if not isinstance(projects, list) or not all(
        isinstance(p, str) and NAME_RE.fullmatch(p) for p in projects
    ):
        raise BadRequest(
            'projects must be a list of project names or ids, e.g. ["web"]; leave it out for '
            "every project",
            field="projects",
        )
    if scope == Scope.ADMIN and projects:
        raise BadRequest(
            "an admin token is for every project (it makes tokens and manages workers); "
            "give a read or submit token projects instead",
            field="projects",
        )
    return TokenInput(
        name=_name(body["name"], "name"),
        scope=Scope(scope),
        projects=tuple(dict.fromkeys(projects)),
    )
