"""Issue 9 as another machine sees it: a master on this host, clients and workers on a test host.

Each test makes a network namespace (tests/netns.py) and starts real master processes on this
side of its veth pair, listening on 0.0.0.0 or on the pair's address here. Requests and workers
from the namespace come from the network, so they need a credential; requests made on this host
over loopback may be trusted, which the loopback tests take apart header by header.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from harness import Proc, free_port, join_token, start_worker, wait_until
from netns import NetnsHost, test_host

from asphalt import tls
from asphalt.protocol import PROTOCOL, parse_join

# Short timings keep leases, long-polls and heartbeats quick; wide waits keep a busy box green.
FAST = ("-lease", "5", "-heartbeat", "1", "-poll-hold", "1")
WAIT_S = 60.0
LOGIN_FORM = re.compile(r'<form method="post" action="/login"[^>]*>(.*?)</form>', re.S)
PROBE = {
    "name": "probe",
    "host": "elsewhere",
    "types": ["never-asked-for"],  # so the probe is never leased a job that real workers wait for
    "runtimes": ["host"],
    "slots": 1,
    "version": "test",
    "protocol": PROTOCOL,
}


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer: header names in lower case, and the cookies it set."""

    status: int
    headers: dict[str, str]
    body: bytes
    cookies: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    @property
    def error(self) -> str:
        """The `error` of a JSON error answer (failing the test if it is not one)."""
        assert self.headers.get("content-type", "").startswith("application/json"), self
        message: str = self.json()["error"]
        return message


def _encode(body: Any) -> bytes | None:
    return body if body is None or isinstance(body, bytes) else json.dumps(body).encode()


def _request(
    base: str,
    method: str,
    path: str,
    *,
    body: Any = None,
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> Answer:
    """One request made on this host with http.client, which sends a given Host unchanged."""
    parts = urlsplit(base)
    assert parts.hostname is not None and parts.port is not None, base
    connection = (
        http.client.HTTPSConnection(parts.hostname, parts.port, context=context, timeout=30)
        if parts.scheme == "https"
        else http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    )
    try:
        connection.request(method, path, body=_encode(body), headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        cookies: dict[str, str] = {}
        for value in response.headers.get_all("Set-Cookie") or []:
            jar = SimpleCookie()
            jar.load(value)
            cookies.update({name: morsel.value for name, morsel in jar.items()})
        got = {name.lower(): value for name, value in response.getheaders()}
        return Answer(response.status, got, data, cookies)
    finally:
        connection.close()


def _bearer(token: str | None, headers: dict[str, str] | None = None) -> dict[str, str]:
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    return sent


@dataclass(eq=False)
class NetMaster:
    """A master process on this host, and the two ways to reach it: from here and from there."""

    proc: Proc
    host: NetnsHost
    data: Path
    port: int
    listen: str
    tls: bool

    @property
    def url(self) -> str:
        """The master as the test host reaches it."""
        return f"{'https' if self.tls else 'http'}://{self.host.host_ip}:{self.port}"

    @property
    def admin(self) -> str:
        return (self.data / "admin.token").read_text().strip()

    @property
    def join(self) -> str:
        return join_token(self.data)

    def remote(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """A request made from inside the test host."""
        status, got, data = self.host.http(
            method,
            self.url + path,
            headers=_bearer(token, headers),
            body=_encode(body),
            insecure=self.tls,
        )
        return Answer(status, got, data)

    def local(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        via: str | None = None,
    ) -> Answer:
        """A request made on this host: over loopback when the master listens there."""
        address = via or ("127.0.0.1" if self.listen == "0.0.0.0" else self.host.host_ip)
        scheme = "https" if self.tls else "http"
        context = None
        if self.tls:  # the certificate names every address of this host, loopback too
            context = ssl.create_default_context(cafile=self.data / tls.CERT_NAME)
        return _request(
            f"{scheme}://{address}:{self.port}",
            method,
            path,
            body=body,
            headers=_bearer(token, headers),
            context=context,
        )

    def admin_get(self, path: str) -> Any:
        """GET with the admin token from this host (whatever the master trusts on loopback)."""
        answer = self.local("GET", path, token=self.admin)
        assert answer.status == 200, (path, answer)
        return answer.json()

    def admin_post(self, path: str, body: Any = None, expect: int = 201) -> Any:
        answer = self.local("POST", path, token=self.admin, body=body)
        assert answer.status == expect, (path, answer)
        return answer.json()

    def serving(self) -> bool:
        if self.proc.popen.poll() is not None:
            raise AssertionError(f"master exited {self.proc.popen.returncode}:\n{self.proc.logs()}")
        return self.local("GET", "/", token=self.admin).status == 200

    def events(self, name: str) -> list[dict[str, Any]]:
        """The master's JSON log lines for event `name`."""
        found = []
        for line in self.proc.logs().splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                if record.get("event") == name:
                    found.append(record)
        return found

    def worker_id(self, name: str) -> str | None:
        live = [w for w in self.admin_get("/workers")["workers"] if w["name"] == name]
        return live[0]["id"] if live and live[0]["state"] == "live" else None

    def finished(self, project: str, task: str) -> dict[str, Any] | None:
        body: dict[str, Any] = self.admin_get(f"/projects/{project}/tasks/{task}")
        return body if body["status"] == "complete" else None

    def wait_done(self, project: str, task: str) -> dict[str, Any]:
        return wait_until(lambda: self.finished(project, task), WAIT_S, f"task {task} to complete")

    def register(self, token: str | None, name: str = "probe") -> Answer:
        """A worker's registration, as any program on the test host could send it."""
        return self.remote("POST", "/_worker/register", token=token, body={**PROBE, "name": name})


@dataclass(eq=False)
class RemoteWorker:
    """An asphalt worker process inside the test host."""

    popen: subprocess.Popen[bytes]
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def said(self) -> str:
        """What it told the person who started it, on its last words' line ("asphalt: ...")."""
        lines = [line for line in self.logs().splitlines() if line.startswith("asphalt: ")]
        assert lines, self.logs()
        return lines[-1]

    def exited(self) -> int:
        """Its exit status, once it has ended by itself (failing the test if it does not)."""
        try:
            return self.popen.wait(WAIT_S)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"the worker is still running:\n{self.logs()}") from e


class Net:
    """A test host and this host's side of it: masters here, workers on either side."""

    def __init__(self, host: NetnsHost, tmp: Path) -> None:
        self.host = host
        self.tmp = tmp
        self.masters: list[NetMaster] = []
        self.local_workers: list[Proc] = []
        self.remote_workers: list[RemoteWorker] = []

    def master(self, *flags: str, listen: str = "0.0.0.0") -> NetMaster:
        assert listen in ("0.0.0.0", self.host.host_ip), "masters listen here, nowhere else"
        n = len(self.masters)
        data, port = self.tmp / f"data{n}", free_port()
        args = ["-host", listen, "-port", str(port), "-data", str(data), "-log", "json"]
        args += ["-docker-network", "none", "-grace", "2", *FAST, *flags]
        proc = Proc(args, self.tmp / f"master{n}.log")
        master = NetMaster(proc, self.host, data, port, listen, tls="-tls" in flags)
        self.masters.append(master)
        wait_until(master.serving, WAIT_S, "the master to serve")
        return master

    def remote_worker(self, *flags: str, name: str) -> RemoteWorker:
        """`asphalt FLAGS` inside the test host, as a worker called `name` with one slot."""
        log_path = self.tmp / f"remote-{name}.log"
        argv = [sys.executable, "-m", "asphalt", *flags, "-name", name, "-slots", "1"]
        argv += ["-state", str(self.tmp / f"state-{name}"), "-log", "json"]
        argv += ["-docker-network", "none", "-grace", "2", "-drain", "0"]
        env = {k: v for k, v in os.environ.items() if k != "ASPHALT_JOIN"}
        env["PYTHONUNBUFFERED"] = "1"
        with log_path.open("ab") as out:
            popen = self.host.popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        worker = RemoteWorker(popen, log_path)
        self.remote_workers.append(worker)
        return worker

    def local_worker(self, master: NetMaster, *, name: str) -> Proc:
        """A worker on this host, reaching the master over loopback with its join token."""
        flags = ("-name", name, "-slots", "1", "-drain", "0")
        proc = start_worker(master.port, self.tmp, *flags, join=master.join)
        self.local_workers.append(proc)
        return proc

    def close(self) -> None:
        """Workers first (so none waits on a master that is gone), then the masters."""
        for worker in self.remote_workers:
            if worker.popen.poll() is None:
                worker.popen.terminate()
                try:
                    worker.popen.wait(20)
                except subprocess.TimeoutExpired:
                    worker.popen.kill()
                    worker.popen.wait(10)
        for proc in [*self.local_workers, *(m.proc for m in reversed(self.masters))]:
            proc.stop()


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    with test_host() as host:
        made = Net(host, tmp_path)
        try:
            yield made
        finally:
            made.close()


def _wait_running(master: NetMaster, job: str, worker: str) -> dict[str, Any]:
    def running() -> dict[str, Any] | None:
        view: dict[str, Any] = master.admin_get(f"/jobs/{job}")
        return view if view["state"] == "running" and view["worker"] == worker else None

    return wait_until(running, WAIT_S, f"job {job} to run on {worker}")


# From the network every route needs a credential, and the right one works.


def test_every_user_route_answers_401_from_another_host_and_works_with_the_admin_token(
    net: Net,
) -> None:
    master = net.master()  # with its embedded worker, so the jobs below really run
    master.admin_post("/", {"name": "p"})
    for task in ("view", "again", "rerun", "stop"):
        master.admin_post("/projects/p", {"id": task, "action": f"echo {task}"})
    for task in ("view", "again", "rerun", "stop"):
        master.wait_done("p", task)
    job = master.admin_get("/projects/p/tasks/view")["jobs"]["main"]["id"]
    again = master.admin_get("/projects/p/tasks/again")["jobs"]["main"]["id"]
    made = master.admin_post("/tokens", {"name": "doomed", "scope": "read"})
    probe = master.register(master.join)
    assert probe.status == 201, probe
    worker = probe.json()["worker"]
    routes: list[tuple[str, str, Any, int]] = [
        ("GET", "/", None, 200),
        ("POST", "/", {"name": "q"}, 201),
        ("GET", "/projects/p", None, 200),
        ("POST", "/projects/p", {"id": "new", "action": "true"}, 201),
        ("GET", "/projects/p/tasks/view", None, 200),
        ("GET", f"/jobs/{job}", None, 200),
        ("GET", f"/jobs/{job}/output", None, 200),
        ("GET", f"/jobs/{job}/output?follow=1", None, 200),
        ("POST", f"/jobs/{again}/rerun", None, 201),
        ("POST", "/projects/p/tasks/rerun/rerun", None, 201),
        ("POST", "/projects/p/tasks/stop/cancel", None, 200),
        ("GET", "/workers", None, 200),
        ("GET", "/tokens", None, 200),
        ("POST", "/tokens", {"name": "ci", "scope": "submit"}, 201),
        ("DELETE", f"/tokens/{made['id']}", None, 200),
        ("POST", f"/workers/{worker}/revoke", None, 200),
        ("POST", "/workers/join-token", None, 201),
        ("GET", "/metrics", None, 200),
    ]
    for method, path, body, _ in routes:
        answer = master.remote(method, path, body=body)
        assert answer.status == 401, (method, path, answer)
        assert "Authorization: Bearer" in answer.error, (method, path)
        assert answer.headers["www-authenticate"].startswith("Bearer")
        # The join token is no API token, wherever it is sent.
        assert master.remote(method, path, body=body, token=master.join).status == 401
    # Nothing was made, changed or revoked by all that.
    assert [p["name"] for p in master.admin_get("/")["projects"]] == ["p"]
    assert {t["name"] for t in master.admin_get("/tokens")["tokens"]} == {"admin", "doomed"}
    assert master.admin_get(f"/jobs/{again}")["attempt"] == 1
    for method, path, body, expect in routes:
        answer = master.remote(method, path, body=body, token=master.admin)
        assert answer.status == expect, (method, path, answer)
    output = master.remote("GET", f"/jobs/{job}/output", token=master.admin)
    assert output.text == "view\n"
    # The health checks are open from the network, and say nothing but that.
    for path, says in (("/healthz", {"status": "ok"}), ("/readyz", {"status": "ready"})):
        answer = master.remote("GET", path)
        assert answer.status == 200 and answer.json() == says, (path, answer)


def test_a_page_request_from_another_host_without_a_token_gets_the_login_page(net: Net) -> None:
    master = net.master("-no-worker")
    for path in ("/", "/projects/p", "/workers", "/tokens"):
        answer = master.remote("GET", path, headers={"Accept": "text/html"})
        assert answer.status == 401, (path, answer)
        assert answer.headers["content-type"].startswith("text/html")
        form = LOGIN_FORM.search(answer.text)
        assert form is not None, answer.text
        assert 'name="token"' in form[1] and 'name="_csrf"' in form[1]
    page = master.remote("GET", "/", token=master.admin, headers={"Accept": "text/html"})
    assert page.status == 200 and "Sign in" not in page.text


def test_the_worker_protocol_takes_the_join_token_then_only_the_workers_own_credential(
    net: Net,
) -> None:
    master = net.master("-no-worker")
    rogue = master.register(None)
    assert rogue.status == 401 and "-join" in rogue.error
    assert master.register(master.admin).status == 401  # the admin token is no join token
    joined = master.register(master.join)
    assert joined.status == 201, joined
    worker, secret = joined.json()["worker"], joined.json()["secret"]
    other = master.register(master.join, name="other").json()
    lease, beat = f"/_worker/{worker}/lease", f"/_worker/{worker}/heartbeat"
    beating = {"running": [], "draining": False}
    for path, body in ((lease, {}), (beat, beating)):
        assert master.remote("POST", path, body=body).status == 401
        assert master.remote("POST", path, body=body, token=master.join).status == 401
        assert master.remote("POST", path, body=body, token=master.admin).status == 401
        # A worker id is worth nothing with another worker's credential.
        assert master.remote("POST", path, body=body, token=other["secret"]).status == 401
    assert master.remote("POST", lease, body={}, token=secret).status == 204  # nothing to run
    answer = master.remote("POST", beat, body=beating, token=secret)
    assert answer.status == 200, answer


# Scoped tokens.


def test_a_read_token_may_look_but_not_submit(net: Net) -> None:
    master = net.master("-no-worker")
    master.admin_post("/", {"name": "p"})
    made = master.remote("POST", "/tokens", token=master.admin, body={"name": "r", "scope": "read"})
    assert made.status == 201, made
    read = made.json()
    assert (read["name"], read["scope"], read["projects"]) == ("r", "read", [])
    token = read["token"]
    for path in ("/", "/projects/p", "/workers"):
        assert master.remote("GET", path, token=token).status == 200, path
    task = {"id": "t", "action": "true"}
    refused = master.remote("POST", "/projects/p", token=token, body=task)
    assert refused.status == 403 and "scope" in refused.error
    assert master.remote("POST", "/", token=token, body={"name": "q"}).status == 403
    assert master.remote("GET", "/tokens", token=token).status == 403


def test_a_submit_token_for_one_project_may_work_there_and_nowhere_else(net: Net) -> None:
    master = net.master("-no-worker")
    for name in ("p", "q"):
        master.admin_post("/", {"name": name})
    body = {"name": "ci", "scope": "submit", "projects": ["p"]}
    made = master.remote("POST", "/tokens", token=master.admin, body=body)
    assert made.status == 201, made
    ci = made.json()
    assert (ci["scope"], ci["projects"]) == ("submit", ["p"])
    token = ci["token"]

    def call(method: str, path: str, body: Any = None) -> int:
        return master.remote(method, path, token=token, body=body).status

    assert call("POST", "/projects/p", {"id": "t", "action": "true"}) == 201
    assert call("POST", "/projects/p/tasks/t/cancel") == 200
    assert call("POST", "/projects/p/tasks/t/rerun") == 201
    assert call("GET", "/projects/p/tasks/t") == 200
    assert call("POST", "/projects/q", {"id": "t", "action": "true"}) == 403
    assert call("GET", "/projects/q") == 403
    assert call("POST", "/", {"name": "r"}) == 403
    assert call("GET", "/tokens") == 403
    assert call("POST", "/tokens", {"name": "more", "scope": "admin"}) == 403
    listed = master.remote("GET", "/", token=token).json()["projects"]
    assert [p["name"] for p in listed] == ["p"]
    # Revoked at once: the very next call is refused.
    gone = master.remote("DELETE", f"/tokens/{ci['id']}", token=master.admin)
    assert gone.status == 200, gone
    answer = master.remote("GET", "/", token=token)
    assert answer.status == 401 and "not valid" in answer.error


def test_the_token_list_never_shows_a_secret(net: Net) -> None:
    master = net.master("-no-worker")
    secrets = [master.admin, master.join.removeprefix("ASPHALT-1-")]
    for scope in ("read", "submit", "admin"):
        body = {"name": f"t-{scope}", "scope": scope}
        made = master.remote("POST", "/tokens", token=master.admin, body=body)
        secrets.append(made.json()["token"])
    answer = master.remote("GET", "/tokens", token=master.admin)
    assert answer.status == 200
    listed = answer.json()["tokens"]
    assert {t["name"] for t in listed} >= {"admin", "t-read", "t-submit", "t-admin"}
    for token in listed:
        assert "token" not in token and not any("hash" in key.lower() for key in token), token
    for secret in secrets:
        hidden = secret.rpartition("_")[2]  # an API token is asp_ID_SECRET
        assert hidden not in answer.text
        assert hashlib.sha256(hidden.encode()).hexdigest() not in answer.text
        assert hashlib.sha256(secret.encode()).hexdigest() not in answer.text


# Workers join only with the join token.


def test_a_worker_on_another_host_joins_only_with_the_printed_join_token(net: Net) -> None:
    master = net.master("-no-worker")
    assert master.events("listening_beyond_loopback")[0]["level"] == "warning"
    assert "0.0.0.0" not in master.events("master_serving")[0]["ui"]
    command = master.events("worker_command")[0]["command"]
    printed = re.fullmatch(r"asphalt -master \S+ -join (\S+)", command)
    assert printed is not None and printed[1] == master.join, command
    address = f"{net.host.host_ip}:{master.port}"

    lost = net.remote_worker("-master", address, name="no-join")
    assert lost.exited() != 0
    assert "-join TOKEN" in lost.said() and "join token" in lost.said()
    assert master.worker_id("no-join") is None

    net.remote_worker("-master", address, "-join", printed[1], name="over-there")
    worker = wait_until(lambda: master.worker_id("over-there"), WAIT_S, "the worker to join")
    made = master.local("POST", "/", body={"name": "p"})  # loopback here: no token needed
    assert made.status == 201, made
    task = {"id": "t", "action": "echo ran elsewhere"}
    assert master.local("POST", "/projects/p", body=task).status == 201
    job = master.wait_done("p", "t")["jobs"]["main"]
    assert (job["state"], job["output"]) == ("succeeded", "ran elsewhere\n")
    assert (job["worker"], job["workerName"]) == (worker, "over-there")


# Revocation and a new join token.


def test_a_revoked_worker_is_cut_off_and_its_job_runs_elsewhere(net: Net) -> None:
    master = net.master("-no-worker")
    address = f"{net.host.host_ip}:{master.port}"
    first = net.remote_worker("-master", address, "-join", master.join, name="a")
    a = wait_until(lambda: master.worker_id("a"), WAIT_S, "worker a to join")
    marker = net.tmp / "first-attempt"
    # The first attempt makes the marker and sleeps; any later one finds it and ends at once.
    action = f"mkdir {marker} 2>/dev/null && sleep 60; echo finished"
    master.admin_post("/", {"name": "p"})
    made = master.admin_post("/projects/p", {"id": "t", "action": action, "retries": 0})
    job = made["jobs"]["main"]["id"]
    _wait_running(master, job, a)
    wait_until(marker.exists, WAIT_S, "the first attempt to start")
    net.local_worker(master, name="b")
    b = wait_until(lambda: master.worker_id("b"), WAIT_S, "worker b to join")

    answer = master.remote("POST", f"/workers/{a}/revoke", token=master.admin)
    assert answer.status == 200, answer
    assert (answer.json()["id"], answer.json()["state"]) == (a, "revoked")

    assert first.exited() != 0
    assert "revoked" in first.said() and "-join" in first.said()
    done = master.wait_done("p", "t")["jobs"]["main"]
    assert (done["state"], done["output"]) == ("succeeded", "finished\n")
    assert (done["worker"], done["attempt"], done["retries"]) == (b, 2, 0)
    assert [(x["worker"], x["state"]) for x in done["attempts"]] == [(a, "lost")]
    assert "revoked" in done["attempts"][0]["reason"]
    states = {w["id"]: w["state"] for w in master.admin_get("/workers?all=true")["workers"]}
    assert states[a] == "revoked"


def test_a_revoked_workers_credential_is_refused_at_once(net: Net) -> None:
    master = net.master("-no-worker")
    joined = master.register(master.join).json()
    worker, secret = joined["worker"], joined["secret"]
    beat = f"/_worker/{worker}/heartbeat"
    beating = {"running": [], "draining": False}
    assert master.remote("POST", beat, body=beating, token=secret).status == 200
    revoked = master.remote("POST", f"/workers/{worker}/revoke", token=master.admin)
    assert revoked.status == 200, revoked
    for path, body in ((beat, beating), (f"/_worker/{worker}/lease", {})):
        answer = master.remote("POST", path, body=body, token=secret)
        assert answer.status == 401 and "revoked" in answer.error, (path, answer)


def test_a_new_join_token_stops_the_old_one(net: Net) -> None:
    master = net.master("-no-worker")
    old = master.join
    assert master.register(old).status == 201
    assert master.remote("POST", "/workers/join-token").status == 401
    made = master.remote("POST", "/workers/join-token", token=master.admin)
    assert made.status == 201, made
    new = made.json()["token"]
    assert new != old and parse_join(new) is not None
    assert made.json()["command"].endswith(f" -join {new}")
    assert master.join == new  # the file now holds it too
    refused = master.register(old)
    assert refused.status == 401 and "join token" in refused.error
    assert master.register(new).status == 201


# TLS, pinned by the join token.


def test_tls_auto_works_end_to_end_with_the_pinned_join_token(net: Net) -> None:
    master = net.master("-no-worker", "-tls", "auto", listen=net.host.host_ip)
    parsed = parse_join(master.join)
    assert parsed is not None
    assert parsed[1] == tls.fingerprint(master.data / tls.CERT_NAME)
    command = master.events("worker_command")[0]["command"]
    assert command == f"asphalt -master {master.url} -join {master.join}"

    # The command the master printed, run as it is on the other host.
    net.remote_worker(*command.split()[1:], name="pinned")
    worker = wait_until(lambda: master.worker_id("pinned"), WAIT_S, "the pinned worker to join")
    master.admin_post("/", {"name": "p"})
    master.admin_post("/projects/p", {"id": "t", "action": "echo over tls"})
    job = master.wait_done("p", "t")["jobs"]["main"]
    assert (job["state"], job["output"], job["worker"]) == ("succeeded", "over tls\n", worker)

    assert master.remote("GET", "/", token=master.admin).status == 200
    assert master.remote("GET", "/").status == 401
    # Plain HTTP to the TLS port gets no answer at all.
    with pytest.raises(ConnectionError):
        net.host.http("GET", f"http://{net.host.host_ip}:{master.port}/", timeout_s=20)


def test_a_worker_whose_join_token_pins_another_certificate_is_refused(net: Net) -> None:
    master = net.master("-no-worker", "-tls", "auto", listen=net.host.host_ip)
    parsed = parse_join(master.join)
    assert parsed is not None
    secret, pin = parsed
    assert pin is not None
    other = hashlib.sha256(b"another master's certificate").hexdigest()
    assert other != pin
    forged = f"ASPHALT-1-{other}-{secret}"
    worker = net.remote_worker("-master", master.url, "-join", forged, name="misled")
    assert worker.exited() != 0
    said = worker.said()
    assert "is not the one the join token pins" in said and other in said and pin in said
    assert master.worker_id("misled") is None


# The loopback rule and DNS rebinding, on this host.


def test_loopback_trust_needs_a_loopback_host_and_no_forwarding_header(net: Net) -> None:
    master = net.master("-no-worker")
    port = master.port
    for host in (f"127.0.0.1:{port}", "127.0.0.1", f"localhost:{port}", f"[::1]:{port}"):
        answer = master.local("GET", "/", headers={"Host": host})
        assert answer.status == 200, (host, answer)
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
        value = "for=1.2.3.4" if header == "Forwarded" else "1.2.3.4"
        answer = master.local("GET", "/", headers={header: value})
        assert answer.status == 401, (header, answer)
    for host in ("evil.example", f"evil.example:{port}", f"{net.host.host_ip}:{port}"):
        answer = master.local("GET", "/", headers={"Host": host})
        assert answer.status == 401, (host, answer)
    # Reaching this host by another of its addresses is not loopback either.
    assert master.local("GET", "/", via=net.host.host_ip).status == 401
    assert master.local("GET", "/", via=net.host.host_ip, token=master.admin).status == 200
    # The worker protocol never trusts loopback.
    assert master.local("POST", "/_worker/register", body=PROBE).status == 401


def test_auth_always_needs_a_token_even_on_loopback(net: Net) -> None:
    master = net.master("-no-worker", "-auth", "always")
    assert master.local("GET", "/").status == 401
    assert master.local("GET", "/", token=master.admin).status == 200
    assert master.remote("GET", "/").status == 401
    assert master.events("listening_beyond_loopback")[0]["level"] == "warning"


def _log_in(master: NetMaster) -> str:
    """Sign in on the login page as a browser does; the session cookie it sets."""
    form = master.local("GET", "/login", headers={"Accept": "text/html"})
    assert form.status == 200, form
    csrf = form.cookies["asphalt_csrf"]
    field_value = re.search(r'name="_csrf" value="([^"]+)"', form.text)
    assert field_value is not None and field_value[1] == csrf
    body = urlencode({"_csrf": csrf, "token": master.admin, "next": "/"}).encode()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": f"asphalt_csrf={csrf}",
        "Accept": "text/html",
    }
    signed_in = master.local("POST", "/login", body=body, headers=headers)
    assert signed_in.status == 303 and signed_in.headers["location"] == "/", signed_in
    return signed_in.cookies["asphalt_session"]


def test_a_session_cookie_is_refused_under_a_foreign_host_name(net: Net) -> None:
    master = net.master("-no-worker", "-auth", "always")  # so only the cookie can let it in
    session = _log_in(master)
    cookie = {"Cookie": f"asphalt_session={session}"}
    assert master.local("GET", "/").status == 401
    for host in ("evil.example", f"evil.example:{master.port}"):
        answer = master.local("GET", "/", headers={**cookie, "Host": host})
        assert answer.status == 403 and "-allow-host" in answer.error, (host, answer)
    for host in (f"127.0.0.1:{master.port}", f"{net.host.host_ip}:{master.port}"):
        answer = master.local("GET", "/", headers={**cookie, "Host": host})
        assert answer.status == 200, (host, answer)
    # Over the network too: the master's own address passes, a rebound name does not.
    own = master.remote("GET", "/", headers=cookie)
    assert own.status == 200, own
    rebound = master.remote("GET", "/", headers={**cookie, "Host": "evil.example"})
    assert rebound.status == 403, rebound


def test_allow_host_names_another_host_a_session_may_use(net: Net) -> None:
    master = net.master("-no-worker", "-auth", "always", "-allow-host", "asphalt.example")
    cookie = {"Cookie": f"asphalt_session={_log_in(master)}"}
    answer = master.local("GET", "/", headers={**cookie, "Host": "asphalt.example"})
    assert answer.status == 200, answer
    assert master.local("GET", "/", headers={**cookie, "Host": "evil.example"}).status == 403


# -auth off.


def test_auth_off_lets_anyone_in_and_says_so(net: Net) -> None:
    master = net.master("-no-worker", "-auth", "off")
    assert master.remote("GET", "/").status == 200
    assert master.remote("POST", "/", body={"name": "p"}).status == 201
    warned = master.events("auth_off")
    assert warned and warned[0]["level"] == "warning" and "ANYONE" in warned[0]["message"]
    page = master.remote("GET", "/", headers={"Accept": "text/html"})
    assert page.status == 200 and "Authentication is off" in page.text
    # The worker protocol still needs the join token.
    assert master.register(None).status == 401
