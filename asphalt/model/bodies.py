"""The API's request bodies, declared once as Structs: what a person may send, field by field,
with the rules each field keeps by itself (types, ranges, patterns; unknown fields refused) and
the words that say how to fix one that breaks them (HINTS). Rules between fields, and turning a
body into the record it describes, are master/core/inputs.py's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar

from asphalt import wire
from asphalt.model.graph import When
from asphalt.model.hooks import HOOK_EVENTS, HookEvent
from asphalt.wire import UNSET, Body, Meta, Query, UnsetType, field

MAX_RETRIES = 100
MAX_OFFSET = 2**63 - 1  # the most a byte offset in a job's output may be
MAX_BACKOFF_S = 3600
MAX_TIMEOUT_S = 7 * 24 * 3600
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z"  # \Z: "$" would let a newline end it
NAME_RULE = "1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
RUNTIMES = ("host", "docker", "singularity", "swarm")
TOKEN_SCOPES = ("read", "submit", "admin")

Name = Annotated[str, Meta(pattern=NAME_PATTERN)]
Image = Annotated[str, Meta(pattern=r"^\S+\Z")]
# A worker variable a job may be given: never the worker's own ASPHALT_*.
EnvName = Annotated[str, Meta(pattern=r"^(?!ASPHALT_)[A-Za-z_][A-Za-z0-9_]*\Z", max_length=128)]
# An absolute path inside the job's container, without "." or ".." parts, nor "," or ":"
# (singularity reads them in a --bind as separators).
InPath = Annotated[
    str, Meta(pattern=r"^(/[A-Za-z0-9_+@%=~-][A-Za-z0-9._+@%=~-]*)+\Z", max_length=512)
]
Runtime = Literal["host", "docker", "singularity", "swarm"]
B = TypeVar("B", bound=Body)

HINTS = {
    "name": f"must be {NAME_RULE}",
    "id": f"must be {NAME_RULE}",
    "action": 'must be a command line ("make test") or an argv list (["make", "test"])',
    "container": 'must be an image name such as "ruby:3"',
    "runtime": f"must be one of {', '.join(RUNTIMES)}",
    "env": 'must be an object of names to values, e.g. {"CI": "1"}',
    "secrets": 'must be an object of names to values, e.g. {"TOKEN": "..."}',
    "limits": 'must be an object such as {"memory": "512m", "cpus": 1.5, "pids": 256}',
    "timeout": f"must be a number of seconds above 0 and at most {MAX_TIMEOUT_S}",
    "retries": f"must be a whole number from 0 to {MAX_RETRIES}",
    "backoff": f"must be seconds from 0 to {MAX_BACKOFF_S}",
    "types": 'must be a list of type names, e.g. ["gpu"]',
    "needs": 'must be a list of job names, e.g. ["build"]',
    "when": f"must be one of {', '.join(When)} (run when every job it needs succeeded, "
    "when one did not, or in any case)",
    "jobs": 'must be an object of job names to jobs, e.g. {"main": {"action": "make test"}}',
    "scope": f"must be one of {', '.join(TOKEN_SCOPES)} (read may GET; submit may also create "
    "tasks, rerun and cancel; admin may do everything)",
    "projects": 'must be a list of project names or ids, e.g. ["web"]; leave it out for every '
    "project",
    "url": "must be an http:// or https:// URL, e.g. https://chat.example.com/hooks/ci",
    "callback": 'must be an http(s) URL, or {"url": URL, "secret": SECRET} to sign with a '
    "secret of its own (without one, the project's callback_secret signs it)",
    "callback_secret": "must be 16 to 256 characters, or null to have none",
    "events": f"must be a list of events from {', '.join(HOOK_EVENTS)}",
    "secret": "must be 16 to 256 characters; leave it out and one is made for you",
    "keep_days": "must be a whole number of days from 0 (kept until deleted) to 36500, or null "
    "for the master's -keep-days",
    "cron": 'must be a cron line of five fields, e.g. "*/15 * * * *", or @hourly, @daily, ...',
    "timezone": "must be an IANA time zone such as UTC or Europe/Berlin",
    "task": 'must be a task body, e.g. {"action": "make nightly"}',
    "limit": "must be a whole number from 1 to 500",
    "before": "must be the id of a task of this project, from the last page's `next`",
    "run": "must be a run number of this task, 1 or more",
    "attempt": "must be an attempt number of this job, 1 or more",
    "stream": "must be stdout, stderr or both (the default)",
    "follow": "must be true or false (1 or 0)",
    "from": "must be a byte offset, 0 or more (an event's id)",
    "all": "must be true or false (1 or 0)",
    "template": f"must be the name of a template ({NAME_RULE}); list them with GET /templates",
    "version": "must be a version number of the template, 1 or more (the newest without it)",
    "args": 'must be an object of the template\'s arguments, e.g. {"epochs": 3}',
    "command": 'must be a path ("/app/run") or an argv list (["python", "/app/run.py"]); the '
    "arguments' JSON is added as its last argument",
    "description": "must be text of at most 4000 characters",
    "env_from_host": 'must be a list of variable names, e.g. ["AWS_REGION"] (never the '
    "worker's own ASPHALT_*)",
    "logs_dir": 'must be an absolute path such as "/logs" (no "." or ".." parts, no "," or ":")',
    "results_dir": 'must be an absolute path such as "/results" (no "." or ".." parts, no "," '
    'or ":")',
    "branches": 'must be a list of branch names or patterns, e.g. ["main", "release/*"]',
    "archive": "must be tar.gz, to download every artifact in one file",
    "max_running": "must be a whole number from 1 to 100000, or null for no cap",
    "overlap": "must be skip (no firing while the last one's task runs) or allow",
    "catchup": "must be none (firings missed while the master was down are skipped) or last "
    "(the latest of them runs)",
}


class ProjectBody(Body, frozen=True, kw_only=True):
    name: Name
    id: Name | None = None


class BareJobBody(Body, frozen=True, kw_only=True):
    """A job that is a whole task (it needs nothing): `{"action": "make test"}`."""

    action: str | list[str]
    container: Image | None = None
    runtime: Runtime | None = None  # docker with a container, else host
    # Names to strings, numbers or booleans; the names and the values are checked as a whole
    # (master/core/inputs.py) so that an error names the variable at fault.
    env: dict[str, Any] | None = None
    secrets: dict[str, Any] | None = None
    limits: dict[str, Any] | None = None  # read by limits.parse_limits, which names each limit
    timeout: Annotated[float, Meta(gt=0, le=MAX_TIMEOUT_S)] | None = None
    retries: Annotated[int, Meta(ge=0, le=MAX_RETRIES)] | None = None
    backoff: Annotated[float, Meta(ge=0, le=MAX_BACKOFF_S)] | None = None
    types: Name | list[Name] | None = None
    env_from_host: list[EnvName] | None = None
    logs_dir: InPath | None = None
    results_dir: InPath | None = None


class JobBody(BareJobBody, frozen=True, kw_only=True):
    """A job in a task's `jobs` map; `needs` and `when` left out take the role's shorthand."""

    needs: str | list[str] | UnsetType = UNSET
    when: When | UnsetType = UNSET


HookUrl = Annotated[str, Meta(pattern=r"^https?://[^\s/?#]+[^\s]*\Z", max_length=2048)]
Secret = Annotated[str, Meta(min_length=16, max_length=256)]


class CallbackBody(Body, frozen=True, kw_only=True):
    url: HookUrl
    secret: Secret | None = None


class BareTaskBody(BareJobBody, frozen=True, kw_only=True):
    """A task that is one job, written as the job with the task's `id` beside it."""

    id: Name | None = None
    callback: HookUrl | CallbackBody | None = None


class TaskBody(Body, frozen=True, kw_only=True):
    id: Name | None = None
    jobs: dict[str, Any]  # each job is read as a JobBody, so that an error names it
    callback: HookUrl | CallbackBody | None = None  # POSTed task.completed when a run completes


class TemplateBody(Body, frozen=True, kw_only=True):
    """A template (saltant's task type): a job described once, launched with arguments."""

    name: Name
    description: Annotated[str, Meta(max_length=4000)] = ""
    runtime: Runtime | None = None  # docker with a container, else host
    container: Image | None = None
    command: Annotated[str, Meta(min_length=1)] | Annotated[list[str], Meta(min_length=1)]
    args: dict[str, Any] = {}  # a JSON Schema (draft 2020-12) for an object of arguments
    env_from_host: list[EnvName] = []
    logs_dir: InPath | None = None
    results_dir: InPath | None = None
    timeout: Annotated[float, Meta(gt=0, le=MAX_TIMEOUT_S)] | None = None
    types: Name | list[Name] | None = None
    limits: dict[str, Any] | None = None
    max_running: Annotated[int, Meta(ge=1, le=100000)] | None = None


class BareTemplateJobBody(Body, frozen=True, kw_only=True):
    """A job launched from a template: `{"template": "train", "args": {"epochs": 3}}`; what the
    template leaves to the launch (env, secrets, retries, a shorter timeout) may be given too."""

    template: Name
    version: Annotated[int, Meta(ge=1)] | None = None
    args: dict[str, Any] = {}
    env: dict[str, Any] | None = None
    secrets: dict[str, Any] | None = None
    timeout: Annotated[float, Meta(gt=0, le=MAX_TIMEOUT_S)] | None = None
    retries: Annotated[int, Meta(ge=0, le=MAX_RETRIES)] | None = None
    backoff: Annotated[float, Meta(ge=0, le=MAX_BACKOFF_S)] | None = None


class TemplateJobBody(BareTemplateJobBody, frozen=True, kw_only=True):
    """A template's job in a task's `jobs` map."""

    needs: str | list[str] | UnsetType = UNSET
    when: When | UnsetType = UNSET


class BareTemplateTaskBody(BareTemplateJobBody, frozen=True, kw_only=True):
    """A task that is one job launched from a template."""

    id: Name | None = None
    callback: HookUrl | CallbackBody | None = None


class ReceiverBody(Body, frozen=True, kw_only=True):
    """PUT /projects/{p}/receivers/{kind}: what a service's pushes make, and its secret."""

    secret: Secret | None = None  # leave it out and one is made, shown in the answer once
    task: dict[str, Any] | None = None  # a task body; or
    template: Name | None = None  # a template, launched with its defaults
    branches: list[Annotated[str, Meta(min_length=1, max_length=200)]] = []


class JobsBody(Body, frozen=True, kw_only=True):
    """Jobs added to a task while its run goes on."""

    jobs: dict[str, Any]


class ProjectSettingsBody(Body, frozen=True, kw_only=True):
    """What PATCH /projects/{p} changes: the fields given, and no others."""

    keep_days: Annotated[int, Meta(ge=0, le=36500)] | UnsetType | None = UNSET
    callback_secret: Secret | UnsetType | None = UNSET


class HookBody(Body, frozen=True, kw_only=True):
    url: HookUrl
    events: Annotated[list[HookEvent], Meta(min_length=1)]
    secret: Secret | None = None


class ScheduleBody(Body, frozen=True, kw_only=True):
    name: Name  # at most 64 characters (the service says so): a task id adds 14
    cron: Annotated[str, Meta(min_length=1, max_length=200)]
    timezone: Annotated[str, Meta(min_length=1, max_length=64)] = "UTC"
    task: dict[str, Any]
    overlap: Literal["skip", "allow"] = "skip"
    catchup: Literal["none", "last"] = "none"


class TokenBody(Body, frozen=True, kw_only=True):
    name: Name
    scope: Literal["read", "submit", "admin"] = "read"
    projects: list[Name] = []


class ErrorAnswer(Body, frozen=True, kw_only=True):
    """Every 4xx answer: what is wrong and how to fix it, and the field at fault if one is."""

    error: str
    field: str | None = None


def read(data: Any, kind: type[B], at: str = "") -> B:
    """A body (or the part of one at `at`, such as "jobs.build") from parsed JSON, or a 400 that
    names the field."""
    return wire.read(data, kind, HINTS, at=at)


# Query parameters (read with wire.Query's rules: from text, others left alone).


class TasksQuery(Query, frozen=True, kw_only=True):
    """GET /projects/{p}: a page of its tasks, newest first."""

    limit: Annotated[int, Meta(ge=1, le=500)] = 50
    before: Name | None = None


class RunQuery(Query, frozen=True, kw_only=True):
    """GET /projects/{p}/tasks/{t}: which run (the newest without it)."""

    run: Annotated[int, Meta(ge=1)] | None = None


class OutputQuery(Query, frozen=True, kw_only=True):
    """GET /jobs/{j}/output: which attempt, which stream, and whether to follow it live."""

    attempt: Annotated[int, Meta(ge=1)] | None = None
    stream: Literal["stdout", "stderr", "both"] = "both"
    follow: bool = False
    from_: Annotated[int, Meta(ge=0, le=MAX_OFFSET)] = field(default=0, name="from")


class ArtifactsQuery(Query, frozen=True, kw_only=True):
    """GET /jobs/{j}/artifacts: which attempt (the current without it); all as a tar.gz."""

    attempt: Annotated[int, Meta(ge=1)] | None = None
    archive: Literal["tar.gz"] | None = None


class TemplateQuery(Query, frozen=True, kw_only=True):
    """GET /templates/{name}: which version (the newest without it)."""

    version: Annotated[int, Meta(ge=1)] | None = None


class WorkersQuery(Query, frozen=True, kw_only=True):
    """GET /workers: with all, also those gone for more than a day."""

    all: bool = False


Q = TypeVar("Q", bound=Query)


def read_query(query: Mapping[str, str], kind: type[Q]) -> Q:
    """A URL's query as a `kind`, or a 400 that names the parameter."""
    return wire.read(dict(query), kind, HINTS, text=True)
