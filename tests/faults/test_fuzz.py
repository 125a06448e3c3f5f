"""Property-based fuzzing of every input the master takes: never a 5xx, never a crash, never
half a record. One real master process (with no worker, so nothing runs) serves the module."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from http.client import HTTPConnection
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from harness import Http, Proc, free_port, join_token, start_master
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

from asphalt.protocol import PROTOCOL

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
# The fuzzer's own worker offers only this type, so no generated job is ever leased to it.
FUZZ_TYPE = "fuzz-only-type"


@dataclass(frozen=True, slots=True)
class Target:
    proc: Proc
    http: Http
    port: int
    project: str  # the id of project "p"
    task: str  # task "t" in it, never run
    job: str  # its main job
    worker: str  # a registered worker that polls for nothing
    credential: dict[str, str]  # the Authorization header of that worker
    join: dict[str, str]  # the Authorization header with the join token


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    data = tmp_path_factory.mktemp("fuzz") / "data"
    port = free_port()
    proc, http = start_master(data, port, "-no-worker", "-poll-hold", "0.05", "-heartbeat", "0.05")
    try:
        project = http.post("/", {"name": "p"})
        task = http.post("/projects/p", {"id": "t", "action": "echo t"})
        registration = {
            "name": "fuzzer",
            "host": "h",
            "types": [FUZZ_TYPE],
            "runtimes": ["host"],
            "slots": 1,
            "version": "fuzz",
            "protocol": PROTOCOL,
        }
        join = {"Authorization": f"Bearer {join_token(data)}"}
        status, welcome = http.call("POST", "/_worker/register", registration, headers=join)
        assert status == 201, welcome
        credential = {"Authorization": f"Bearer {welcome['secret']}"}
        job = task["jobs"]["main"]["id"]
        yield Target(proc, http, port, project["id"], "t", job, welcome["worker"], credential, join)
    finally:
        proc.stop()


def send(
    target: Target,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """One raw request on a fresh connection, as a careless client would send it."""
    conn = HTTPConnection("127.0.0.1", target.port, timeout=30)
    try:
        sent = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def last_failure(target: Target) -> str:
    """The traceback the master logged for the last request it failed."""
    failed = [line for line in target.proc.logs().splitlines() if "request_failed" in line]
    return json.loads(failed[-1]).get("exception", failed[-1]) if failed else "(none logged)"


def check(target: Target, status: int, body: bytes, what: Any) -> None:
    """The properties every answer has: no 5xx, a JSON error on 4xx, and a live master."""
    event(f"HTTP {status}")  # shown by pytest --hypothesis-show-statistics
    assert status < 500, f"{what!r} got {status}: {body[:500]!r}\n{last_failure(target)}"
    if 400 <= status < 500:
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        assert isinstance(answer, dict) and isinstance(answer.get("error"), str), (
            f"{what!r} got {status} without a JSON error: {body[:500]!r}"
        )
    assert target.proc.popen.poll() is None, f"the master died on {what!r}"


def counts(target: Target) -> tuple[int, int]:
    """How many projects there are, and how many tasks project p has."""
    projects = len(target.http.get("/")["projects"])
    tasks = 0
    path: str | None = "/projects/p?limit=500"
    while path:
        page = target.http.get(path)
        tasks += len(page["tasks"])
        path = page["next"]
    return projects, tasks


def encode(value: Any) -> bytes:
    # allow_nan: Python's json reads NaN and Infinity too, so the master must cope with them.
    return json.dumps(value, allow_nan=True).encode()


# Strategies: JSON values of every shape; valid bodies, valid bodies with one field made wrong,
# and bodies that use the real field names with values of any type.

texts = st.text(st.characters(exclude_categories=()), max_size=12)  # lone surrogates too
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([2**31, 2**63, 2**64, -(2**63) - 1, 10**400, 0, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 5e-324, 1e-300, 0.5, 604800.0, 604800.5]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=12,
)
valid_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,15}", fullmatch=True).filter(
    lambda n: n != FUZZ_TYPE
)
names = st.one_of(
    valid_names,
    st.sampled_from(["web", "p", "t", "a" * 128, "a" * 129, "-x", "x y", ".", "é", "a\n"]),
    texts,
)
valid_jobs = st.fixed_dictionaries(
    {
        "action": st.one_of(
            st.sampled_from(["echo hi", "true", "exit 3"]),
            st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=3),
        )
    },
    optional={
        "env": st.dictionaries(
            st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True),
            st.one_of(
                st.text(max_size=8).filter(lambda v: "\0" not in v),
                st.integers(-(10**20), 10**20),
                st.floats(allow_nan=False),
                st.booleans(),
            ),
            max_size=3,
        ),
        "timeout": st.one_of(st.integers(1, 604800), st.floats(0.001, 604800)),
        "types": st.one_of(valid_names, st.lists(valid_names, max_size=2)),
        "retries": st.integers(0, 5),
    },
)
JOB_KEYS = ("action", "container", "env", "timeout", "types", "runtime", "retries", "backoff")


def mutated(valid: st.SearchStrategy[dict[str, Any]], keys: tuple[str, ...]) -> Any:
    """A valid body with one field dropped or given a value of any type."""

    def mutate(body: dict[str, Any], key: str, value: Any, drop: bool) -> dict[str, Any]:
        body = dict(body)
        if drop:
            body.pop(key, None)
        else:
            body[key] = value
        return body

    return st.builds(mutate, valid, st.sampled_from(keys), json_values, st.booleans())


def field(plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(plausible, json_values)


wild_jobs = st.fixed_dictionaries(
    {},
    optional={
        "action": field(st.sampled_from(["echo hi", "", "  ", ["echo", "hi"], [], [""], ["a", 1]])),
        "container": field(st.sampled_from(["ruby:3", "", "a b", "busybox"])),
        "env": field(
            st.dictionaries(
                st.one_of(st.sampled_from(["A", "_B1", "1X", "A-B", ""]), texts), scalars
            )
        ),
        "timeout": field(numbers),
        "types": field(st.one_of(st.lists(names, max_size=3), names)),
        "runtime": field(st.sampled_from(["host", "docker", "singularity", "podman", ""])),
        "retries": field(numbers),
        "backoff": field(numbers),
        "name": json_values,
    },
)
jobs = st.one_of(valid_jobs, mutated(valid_jobs, (*JOB_KEYS, "name")), wild_jobs)
roles = st.sampled_from(["main", "success", "failure", "after", "other", ""])
valid_tasks = st.one_of(
    st.fixed_dictionaries(
        {"jobs": st.fixed_dictionaries({"main": valid_jobs}, optional={"after": valid_jobs})},
        optional={"id": valid_names},
    ),
    st.builds(
        lambda job, tid: {**job, **tid},
        valid_jobs,
        st.fixed_dictionaries({}, optional={"id": valid_names}),
    ),
)
task_dicts = st.one_of(
    valid_tasks,
    mutated(valid_tasks, ("id", "jobs", "action", "name")),
    st.fixed_dictionaries(
        {},
        optional={
            "id": field(names),
            "jobs": field(st.dictionaries(st.one_of(roles, texts), jobs, max_size=4)),
            "name": json_values,
        },
    ),
    st.builds(
        lambda job, tid: {**job, **tid},
        jobs,
        st.fixed_dictionaries({}, optional={"id": field(names)}),
    ),
)
valid_projects = st.fixed_dictionaries({"name": valid_names}, optional={"id": valid_names})
project_dicts = st.one_of(
    valid_projects,
    mutated(valid_projects, ("name", "id", "jobs")),
    st.fixed_dictionaries(
        {}, optional={"name": field(names), "id": field(names), "jobs": json_values}
    ),
)
junk_bodies = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(
        [
            b"",
            b"   ",
            b"NaN",
            b"-Infinity",
            b'{"name": NaN}',
            b"[" * 100_000 + b"]" * 100_000,
            b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
            b'{"name": ' + b"9" * 5000 + b"}",
            b'{"name": "p\\ud800"}',
            b'{"action": "echo \\udfff"}',
            b"\xef\xbb\xbf{}",
            b"\xff\xfe{\x00}\x00",
            b'{"name": "web", "name": "web"}',
        ]
    ),
)
bodies = st.one_of(junk_bodies, json_values.map(encode))
# Idempotency-Key values: a few that repeat, and ones the master must refuse (empty, too long,
# not printable). Latin-1 is what a header carries; a control character makes the request bad
# HTTP, which aiohttp refuses before the master sees it.
idempotency_keys = st.one_of(
    st.none(),
    st.sampled_from(["k1", "k2", "k3", "", "a" * 201, "\xa0", "\xe9t\xe9"]),
    st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_characters="\x7f"),
        min_size=1,
        max_size=12,
    ),
)
FIRST: dict[tuple[str, str], str] = {}  # (path, Idempotency-Key) -> the id its first 201 made


def create(target: Target, path: str, body: bytes, key: str | None) -> tuple[int, bytes, bool]:
    """POST a create; returns the answer and whether it should have added a record."""
    headers = {} if key is None else {"Idempotency-Key": key}
    status, answer = send(target, "POST", path, body, headers)
    check(target, status, answer, (body, key))
    if status != 201:
        return status, answer, False
    made = json.loads(answer)["id"]
    if key is None:
        return status, answer, True
    first = FIRST.get((path, key))
    if first is None:
        FIRST[(path, key)] = made
        return status, answer, True
    assert made == first, f"Idempotency-Key {key!r} gave {made}, but its first create made {first}"
    return status, answer, False


# Creates: a rejected one leaves nothing behind, an accepted one is whole.


@FUZZ
@given(body=st.one_of(project_dicts.map(encode), bodies), key=idempotency_keys)
@example(body=b'{"name": "a\\ud800"}', key=None)
@example(body=b"\x80", key=None)  # not UTF-8, sent with curl's form Content-Type
def test_creating_a_project_from_any_body_never_errs_or_leaves_half_a_project(
    target: Target, body: bytes, key: str | None
) -> None:
    before = counts(target)
    status, answer, added = create(target, "/", body, key)
    after = counts(target)
    assert after == (before[0] + added, before[1]), (body, key, status, answer)
    if status == 201:
        created = json.loads(answer)
        assert target.http.get(f"/projects/{quote(created['id'], safe='')}")["name"]


@FUZZ
@given(body=st.one_of(task_dicts.map(encode), bodies), key=idempotency_keys)
@example(body=b'{"action": "echo \\ud800"}', key=None)
@example(body=b'{"action": "echo", "env": {"A": "\\udc00"}}', key=None)
@example(body=b'{"action": "echo", "container": "x\\ud800"}', key=None)
def test_creating_a_task_from_any_body_never_errs_or_leaves_half_a_task(
    target: Target, body: bytes, key: str | None
) -> None:
    before = counts(target)
    status, answer, added = create(target, "/projects/p", body, key)
    after = counts(target)
    assert after == (before[0], before[1] + added), (body, key, status, answer)
    if status == 201:
        created = json.loads(answer)
        whole = target.http.get(f"/projects/p/tasks/{quote(created['id'], safe='')}")
        assert whole["jobs"].keys() == created["jobs"].keys()
        for name, job in created["jobs"].items():  # a graph's names, or the roles'
            assert target.http.get(f"/jobs/{job['id']}")["name"] == name


# Reads: any query, any path.

query_keys = st.one_of(
    st.sampled_from(["limit", "before", "run", "attempt", "from"]),
    texts.filter(lambda k: k != "follow"),
)
query_values = st.one_of(
    st.sampled_from(
        ["", "0", "1", "2", "500", "501", "-1", "1.5", "\u00b2", "\u0661", "9" * 30, "t"]
    ),
    st.integers().map(str),
    texts,
)


@FUZZ
@given(
    where=st.sampled_from(
        ["/", "/projects/p", "/projects/p/tasks/t", "/jobs/{job}", "/jobs/{job}/output", "/workers"]
    ),
    query=st.dictionaries(query_keys, query_values, max_size=4),
)
def test_reads_with_any_query_string_never_err(
    target: Target, where: str, query: dict[str, str]
) -> None:
    path = (
        where.format(job=target.job)
        + "?"
        + urlencode(query, encoding="utf-8", errors="surrogatepass")
    )
    status, answer = send(target, "GET", path)
    check(target, status, answer, path)


def segment(real: list[str]) -> st.SearchStrategy[str]:
    """A path segment, percent-encoded: mostly one that exists (one_of picks each branch alike)."""
    existing = st.sampled_from(real)
    odd = st.sampled_from(["", ".", "..", "%", "a/b"])
    return st.one_of(existing, existing, existing, texts, odd).map(
        lambda s: quote(s, safe="", encoding="utf-8", errors="surrogatepass")
    )


PATHS = (
    "/projects/{p}",
    "/projects/{p}/tasks/{t}",
    "/projects/{p}/tasks/{t}/rerun",
    "/projects/{p}/tasks/{t}/cancel",
    "/projects/{p}/tasks/{t}/{x}",
    "/projects/{p}/{x}",
    "/jobs/{j}",
    "/jobs/{j}/output",
    "/jobs/{j}/rerun",
    "/jobs/{j}/{x}",
    "/{x}",
    "/{x}/{x}",
)


@FUZZ
@given(data=st.data())
def test_any_method_on_any_path_under_projects_and_jobs_never_errs(
    target: Target, data: st.DataObject
) -> None:
    path = data.draw(st.sampled_from(PATHS)).format(
        p=data.draw(segment(["p", target.project])),
        t=data.draw(segment([target.task])),
        j=data.draw(segment([target.job])),
        x=data.draw(segment(["tasks", "jobs", "output", "rerun", "cancel", "projects"])),
    )
    method = data.draw(st.one_of(st.sampled_from(["GET", "POST"]), st.sampled_from(METHODS)))
    # Deleting the project or task the other fuzz tests use would leave them nothing to aim at
    # (deletion itself is tested in tests/test_retention.py).
    owned = {f"/projects/{p}" for p in ("p", target.project)}
    assume(method != "DELETE" or path not in owned | {f"{o}/tasks/{target.task}" for o in owned})
    body = data.draw(st.one_of(st.none(), bodies))
    status, answer = send(target, method, path, body)
    check(target, status, answer, (method, path, body))


# The worker protocol: garbage from something that claims to be a worker.

registrations = st.fixed_dictionaries(
    {},
    optional={
        "name": field(names),
        "host": field(names),
        "types": field(st.lists(names, max_size=3)),
        "runtimes": field(st.lists(st.sampled_from(["host", "docker", "nope"]), max_size=3)),
        "slots": field(numbers),
        "version": field(texts),
        "untyped": json_values,
        "protocol": field(numbers),
    },
)
finishes = st.fixed_dictionaries(
    {},
    optional={
        "attempt": field(numbers),
        "state": field(
            st.sampled_from(["succeeded", "failed", "timed_out", "cancelled", "lost", "running"])
        ),
        "status": field(numbers),
        "reason": field(texts),
        "started_at": field(numbers),
        "ended_at": field(numbers),
    },
)
heartbeats = st.fixed_dictionaries(
    {},
    optional={
        "running": field(
            st.lists(
                st.one_of(st.tuples(field(texts), field(numbers)).map(list), json_values),
                max_size=3,
            )
        )
    },
)


@FUZZ
@given(data=st.data())
def test_worker_protocol_calls_with_garbage_never_err(target: Target, data: st.DataObject) -> None:
    worker = data.draw(segment([target.worker]))
    job = data.draw(segment([target.job]))
    kind = data.draw(
        st.sampled_from(["register", "lease", "heartbeat", "output", "finish", "release"])
    )
    if kind == "register":
        path, body = "/_worker/register", data.draw(st.one_of(registrations.map(encode), bodies))
    elif kind == "lease":
        path, body = f"/_worker/{worker}/lease", data.draw(st.one_of(st.none(), bodies))
    elif kind == "heartbeat":
        path, body = (
            f"/_worker/{worker}/heartbeat",
            data.draw(st.one_of(heartbeats.map(encode), bodies)),
        )
    elif kind == "output":
        query = data.draw(st.dictionaries(st.sampled_from(["attempt", "offset"]), query_values))
        path = f"/_worker/{worker}/jobs/{job}/output?" + urlencode(
            query, encoding="utf-8", errors="surrogatepass"
        )
        body = data.draw(st.binary(max_size=2000))
    elif kind == "finish":
        path, body = (
            f"/_worker/{worker}/jobs/{job}/finish",
            data.draw(st.one_of(finishes.map(encode), bodies)),
        )
    else:
        path, body = (
            f"/_worker/{worker}/jobs/{job}/release",
            data.draw(st.one_of(st.fixed_dictionaries({"attempt": numbers}).map(encode), bodies)),
        )
    # With the worker's credential (the join token to register), so the garbage gets past the
    # guard and reaches the handlers it is meant to shake.
    headers = target.join if kind == "register" else target.credential
    status, answer = send(target, "POST", path, body, headers)
    check(target, status, answer, (path, body))
    assert target.http.get(f"/jobs/{target.job}")["worker"] is None, "garbage leased a job"
